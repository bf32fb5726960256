/* Talking to the same-origin JSON API (docs/api.md). */

export class HttpError extends Error {
  constructor(status, body) { super(`HTTP ${status}`); this.status = status; this.body = body; }
}

const etags = new Map(); // path -> {etag, data}: unchanged data keeps its identity

/** The JSON at a path relative to the page. An answer that has not changed (same ETag)
 *  is the very object returned before, so a view can skip redrawing it. */
export async function getJSON(path) {
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
