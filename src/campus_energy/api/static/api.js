/* Talking to the same-origin JSON API (docs/api.md). */

export class HttpError extends Error {
  constructor(status, body) { super(`HTTP ${status}`); this.status = status; this.body = body; }
}

const etags = new Map(); // path -> {etag, data}: unchanged data keeps its identity
const chosen = { site: null }; // the site the page shows (null: all the API serves)
/** The name the page shows for where it is: the chosen site's when the API serves several
 *  (null: one site, the page as a single site's). */
export const place = { name: null };

/** The site every request carries (null: none, the whole of what the API serves). */
export function currentSite() { return chosen.site; }
export function setSite(id) { chosen.site = typeof id === "string" && id ? id : null; }

/** An API path with the chosen site (`site=`), for a fetch or a link. */
export function sited(path) {
  if (chosen.site === null) return path;
  return `${path}${path.includes("?") ? "&" : "?"}site=${encodeURIComponent(chosen.site)}`;
}

/** The JSON at a path relative to the page, for the chosen site (`site: false`: as it is).
 *  An answer that has not changed (same ETag) is the very object returned before, so a
 *  view can skip redrawing it. */
export async function getJSON(path, { site = true } = {}) {
  if (site) path = sited(path);
  // "no-cache" makes the browser revalidate with If-None-Match: a 304 costs no body.
  const res = await fetch(new URL(path, document.baseURI), {
    cache: "no-cache", headers: { Accept: "application/json" },
  });
  let body = null;
  try { body = await res.json(); } catch (_) { body = null; }
  if (!res.ok) throw new HttpError(res.status, body);
  const etag = res.headers.get("ETag");
  const prev = etags.get(path);
  if (etag && prev && prev.etag === etag) return prev.data;
  etags.set(path, { etag, data: body });
  return body;
}

/** What a failed fetch means to a reader. */
export function failureText(reason) {
  const http = reason instanceof HttpError;
  return http && reason.status === 503 ? "the data source is unavailable"
    : http ? `the server answered HTTP ${reason.status}` : "the server could not be reached";
}
