/* Alerts on the public dashboard, from GET api/alerts (docs/api.md, "Alerts"):
 * - a banner at the top while alerts fire: how many, the most severe one in words, coloured
 *   by its severity, with a link to the list; dismissed, it stays away for the browser
 *   session until another alert fires;
 * - the Alerts panel: the active alerts (since when, on the site's clock) and the recent
 *   transitions.
 * Nothing shows when the API has no book of alerts (`configured: false`). A failed refresh
 * keeps what was shown and says so in the panel; it never marks the page's data stale. */

import { currentSite, getJSON } from "./api.js";
import { $, clock, make, setTime, setZone, syncRows } from "./format.js";

const RECENT_ROWS = 25; // the newest transitions listed; the API keeps 7 days
const DISMISSED_KEY = "campus-energy.alerts-dismissed";
const SEVERITIES = ["critical", "warning", "info"];
const EVENT_WORDS = { firing: "fired", renotify: "still firing", resolved: "resolved" };

const alertKey = (a) => `${a.rule}/${a.subject}`;
const firingKey = (a) => `${a.rule}/${a.subject}/${a.fired || a.since}`;
const severityOf = (a) => (SEVERITIES.includes(a.severity) ? a.severity : "info");
const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;

// ---------------------------------------------------------------- dismissing the banner
const memory = new Set(); // where sessionStorage is refused (a private window's quota)
function dismissed() {
  try {
    const kept = JSON.parse(window.sessionStorage.getItem(DISMISSED_KEY) || "[]");
    return new Set(Array.isArray(kept) ? kept.map(String) : []);
  } catch (_) {
    return new Set(memory);
  }
}
function dismiss(keys) {
  keys.forEach((k) => memory.add(k));
  try { window.sessionStorage.setItem(DISMISSED_KEY, JSON.stringify([...keys])); } catch (_) { /* kept in memory */ }
}

// ---------------------------------------------------------------- the banner
const shown = { firing: [] };

function bannerText(firing) {
  const top = firing[0];
  const what = `${top.rule} ${top.subject}${top.detail ? ` (${top.detail})` : ""}`;
  const more = firing.length > 1 ? ` and ${firing.length - 1} more` : "";
  return `${plural(firing.length, "alert", "alerts")} firing — ${what}${more}`;
}

function renderBanner(firing) {
  shown.firing = firing;
  const banner = $("#alert-banner");
  const gone = dismissed();
  if (!firing.length || firing.every((a) => gone.has(firingKey(a)))) {
    banner.hidden = true;
    return;
  }
  const text = bannerText(firing);
  const el = $("#alert-banner-text");
  if (el.textContent !== text) el.textContent = text; // unchanged: not announced again
  banner.dataset.severity = severityOf(firing[0]);
  banner.dataset.count = String(firing.length);
  banner.hidden = false;
}

$("#alert-banner-dismiss").addEventListener("click", () => {
  dismiss(shown.firing.map(firingKey));
  $("#alert-banner").hidden = true;
});

// ---------------------------------------------------------------- the panel
function severityBadge(cell, severity) {
  let badge = cell.querySelector(".severity");
  if (!badge) { badge = make("span", "severity"); cell.append(badge); }
  badge.textContent = severity;
  badge.dataset.severity = severity;
}

function buildActiveRow() {
  const tr = make("tr", "alert-row");
  const rule = make("th");
  rule.scope = "row";
  const since = make("td", "opt");
  since.append(make("time"));
  tr.append(make("td"), rule, make("td"), make("td"), since, make("td", "words"));
  return tr;
}
function updateActiveRow(tr, a) {
  const [severity, rule, subject, state, since, detail] = tr.cells;
  severityBadge(severity, severityOf(a));
  rule.textContent = a.rule;
  rule.title = `${a.kind} · ${a.scope}`;
  subject.textContent = a.subject;
  const notes = [a.phase];
  if (a.acked) notes.push(`acknowledged${a.acked.by ? ` by ${a.acked.by}` : ""}`);
  if (a.silenced_until) notes.push("silenced");
  state.textContent = notes.join(", ");
  tr.dataset.phase = a.phase;
  setTime(since.firstChild, a.since);
  detail.textContent = a.detail || "—";
}

function buildRecentRow() {
  const tr = make("tr");
  const at = make("td");
  at.append(make("time"));
  tr.append(at, make("td"), make("td"), make("td"), make("td"), make("td", "words opt"));
  return tr;
}
function updateRecentRow(tr, r) {
  const [at, event, severity, rule, subject, detail] = tr.cells;
  setTime(at.firstChild, r.at);
  event.textContent = (EVENT_WORDS[r.event] || r.event) + (r.suppressed ? " (silenced)" : "");
  severityBadge(severity, severityOf(r));
  rule.textContent = r.rule;
  subject.textContent = r.subject;
  detail.textContent = r.detail || "—";
}

function renderPanel(data) {
  const active = (Array.isArray(data.active) ? data.active : []).filter((a) => a && a.rule != null);
  syncRows($("#alerts-active"), active, alertKey, buildActiveRow, updateActiveRow, $("#alerts-none"));
  const recent = (Array.isArray(data.recent) ? data.recent : []).filter((r) => r && r.rule != null);
  const listed = recent.slice(0, RECENT_ROWS);
  syncRows($("#alerts-recent"), listed, (r) => `${r.rule}/${r.subject}/${r.event}/${r.at}`,
    buildRecentRow, updateRecentRow, $("#alerts-recent-none"));
  $("#alerts-recent-more").textContent = recent.length > listed.length
    ? `The ${listed.length} newest of ${recent.length} transitions.` : "";
  const silences = Array.isArray(data.silences) ? data.silences.length : 0;
  $("#alerts-silences").textContent = silences
    ? `${plural(silences, "silence is", "silences are")} in force: the alerts they cover are not notified.` : "";
}

/** Fetch and show the alerts; never throws (a failure is said in the panel). */
export async function refreshAlerts() {
  const error = $("#alerts-error");
  let data;
  const asked = currentSite();
  try {
    data = await getJSON("api/alerts");
    if (currentSite() !== asked) return; // another site was chosen meanwhile
  } catch (e) {
    error.textContent = `Couldn't update the alerts (${clock.format(Date.now())}); showing what was last received.`;
    error.hidden = false;
    return;
  }
  error.hidden = true;
  if (!data || typeof data !== "object") return;
  setZone(data.timezone);
  const configured = data.configured === true;
  const panel = $("#alerts");
  panel.dataset.configured = String(configured); // for scripts (and tests): answered
  panel.hidden = !configured;
  if (!configured) { $("#alert-banner").hidden = true; return; }
  try {
    const active = Array.isArray(data.active) ? data.active : [];
    renderBanner(active.filter((a) => a && a.phase === "firing"));
    renderPanel(data);
  } catch (e) {
    console.error("rendering api/alerts", e);
  }
}
