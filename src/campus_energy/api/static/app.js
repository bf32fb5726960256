/* Campus Energy public dashboard. Plain ES2020 modules, no build step, no framework.
 * Talks only to the same-origin JSON API described in docs/api.md and updates
 * the page in place every data-refresh-s seconds (read from <main id="app">).
 * Two views on one page: the campus (the address without a fragment) and a building's
 * page (#building=<name>, building.js). When the API serves several sites (/api/sites),
 * a picker chooses one (kept in the address as ?site=<id>; none: all of them), every
 * request carries it and the header names it. */

import { refreshAlerts } from "./alerts.js";
import { HttpError, currentSite, failureText, getJSON, place, setSite } from "./api.js";
import { renderOverview, setName } from "./billing.js";
import {
  buildingJobs, demandChart, pageTitle, renderBuilding, routedBuilding, showBuilding,
} from "./building.js";
import {
  askedRange, chartSlot, dailyColumns, dailyOptions, describeDaily, describePower, fiveMinutes,
  monthRange, peakOf, powerOptions,
} from "./charts.js";
import {
  $, clock, fmtAge, fmtKW, fmtKWh, fmtPct, isNum, kW, kWh, make, nf0, setMeasured, setNumber, setTime,
  setZone, syncRows,
} from "./format.js";

const app = $("#app");
const REFRESH_S = (() => {
  const n = Number.parseInt(app.dataset.refreshS, 10);
  return Number.isFinite(n) && n >= 5 ? n : 60;
})();
const STATUSES = ["ok", "degraded", "unavailable"];

const chart24h = chartSlot($("#chart-24h"), (range) => powerOptions("Campus power", range), fiveMinutes,
  askedRange, describePower("Campus average power"));
const chart30d = chartSlot($("#chart-30d"), dailyOptions, dailyColumns, monthRange, describeDaily);
/** The month chart's key, while it draws generation and net beside consumption. */
function renderDailyKey() {
  $("#daily-key").hidden = !(chart30d.data && chart30d.data.length > 2);
}
const chartMeter = chartSlot($("#chart-meter"), (range) => powerOptions("Meter power", range), fiveMinutes,
  askedRange, describePower("Meter average power"));
// What each chart drew, for people who script the page (and for its tests).
window.campusCharts = { power24h: chart24h, daily30d: chart30d, meter: chartMeter, demand: demandChart };

// ---------------------------------------------------------------- tables
function buildBuildingRow(key) {
  const tr = make("tr");
  const name = make("th", null, key);
  name.scope = "row";
  const bar = make("span", "share-bar");
  bar.setAttribute("aria-hidden", "true");
  bar.append(make("span", "share-fill"));
  const share = make("span", "share");
  share.append(bar, make("span", "share-text"));
  const cell = make("td");
  cell.append(share);
  tr.append(name, make("td", "num"), make("td", "num"), make("td", "num flow"), make("td", "num flow"), cell);
  return tr;
}
function updateBuildingRow(tr, b) {
  setName(tr.cells[0], b.building, state.model);
  setNumber(tr.cells[1], kW(b.power_w), fmtKW);
  setMeasured(tr.cells[2], b.today_kwh, b.today_estimated_kwh, fmtKWh);
  setMeasured(tr.cells[3], b.today_export_kwh, b.today_estimated_export_kwh, fmtKWh);
  setNumber(tr.cells[4], b.today_net_kwh, fmtKWh);
  const share = isNum(b.share_today) ? b.share_today : null;
  setNumber(tr.querySelector(".share-text"), share, fmtPct);
  tr.querySelector(".share-fill").style.width = `${Math.max(0, Math.min(100, (share || 0) * 100))}%`;
}

function buildMeterRow(key) {
  const tr = make("tr", "meter-row");
  const button = make("button", "meter-button", key);
  button.type = "button";
  button.setAttribute("aria-haspopup", "dialog");
  const id = make("td");
  id.append(button);
  const status = make("td");
  status.append(make("span", "badge"));
  tr.append(id, make("td"), make("td", "opt"), make("td", "num"), make("td", "opt"), status);
  return tr;
}
function updateMeterRow(tr, m) {
  tr.cells[1].textContent = m.building ?? "—";
  tr.cells[2].textContent = m.floor ?? "—";
  setNumber(tr.cells[3], kW(m.power_w), fmtKW);
  setTime(tr.cells[4], m.last_window);
  const badge = tr.querySelector(".badge");
  badge.textContent = m.online ? "online" : "offline";
  badge.dataset.online = String(Boolean(m.online));
}

// ---------------------------------------------------------------- rendering
const state = { health: null, summary: null, meters: null, model: null, overview: null };

function renderHeader() {
  const h = state.health || {};
  const s = state.summary || {};
  const status = STATUSES.includes(h.status) ? h.status : "unknown";
  const statusEl = $("#health-status");
  statusEl.textContent = status;
  statusEl.dataset.status = status;
  $("#health-dot").dataset.status = status;
  if (h.error) statusEl.title = String(h.error); else statusEl.removeAttribute("title");

  const lastIso = h.last_window !== undefined ? h.last_window : s.last_window;
  const lastMs = setTime($("#last-window"), lastIso);
  $("#last-window-age").textContent = lastMs === null ? "" : `(${fmtAge(lastMs)})`;

  const total = isNum(h.meters) ? h.meters : s.meters;
  const online = isNum(h.meters_reporting) ? h.meters_reporting : s.meters_online;
  $("#meters-online").textContent = isNum(total) && isNum(online) ? `${nf0.format(online)} / ${nf0.format(total)}` : "—";

  // Health has no coverage of its own (yet): fall back to the mean over the meters' latest windows.
  const covs = ((state.meters && state.meters.meters) || []).map((m) => m && m.coverage).filter(isNum);
  const coverage = isNum(h.coverage) ? h.coverage : covs.length ? covs.reduce((a, b) => a + b, 0) / covs.length : null;
  setNumber($("#coverage"), coverage, fmtPct);

  const tz = h.timezone || s.timezone || (state.meters && state.meters.timezone);
  setZone(tz);
  if (tz) $("#site-zone").textContent = tz;
  const known = state.summary || state.health;
  $("#no-data").hidden = !known || (known.last_window != null) || status === "unavailable";
}

const PERIODS = ["today", "week", "month"];
const nonZero = (v) => isNum(v) && v !== 0;
/** Show `value` only where it is not zero (an estimate), else hide `box` and forget it. */
function setIfAny(box, el, value) {
  box.hidden = !nonZero(value);
  setNumber(el, nonZero(value) ? value : null, fmtKWh);
}

/** Today, this week, this month: consumption (the measured import, as ever); the measured
 *  figure and the estimate beside it where the registers bridged a gap; generation and net
 *  wherever the campus generated at all (else the page is as it was before solar). */
function renderPeriods(s) {
  const flows = PERIODS.some((p) => nonZero(s[`${p}_export_kwh`]) || nonZero(s[`${p}_estimated_export_kwh`]));
  const estimated = PERIODS.some((p) => nonZero(s[`${p}_estimated_kwh`]) || nonZero(s[`${p}_estimated_export_kwh`]));
  const section = $("#kpi-heading").closest("section");
  for (const p of PERIODS) {
    setNumber($(`#${p}-kwh`), s[`${p}_kwh`], fmtKWh);
    setNumber($(`#${p}-estimate .measured`), s[`${p}_kwh`], fmtKWh);
    setIfAny($(`#${p}-estimate`), $(`#${p}-estimated-kwh`), s[`${p}_estimated_kwh`]);
    setNumber($(`#${p}-export-kwh`), flows ? s[`${p}_export_kwh`] : null, fmtKWh);
    setNumber($(`#${p}-net-kwh`), flows ? s[`${p}_net_kwh`] : null, fmtKWh);
    setIfAny($(`#${p}-estimate-export`), $(`#${p}-estimated-export-kwh`), flows ? s[`${p}_estimated_export_kwh`] : null);
  }
  section.querySelectorAll(".flows").forEach((el) => { el.hidden = !flows; });
  section.querySelector(".hint.estimate").hidden = !estimated;
  $("#buildings").dataset.flows = String(flows);
}

function renderSummary(s) {
  setNumber($("#power-now"), kW(s.power_w), fmtKW);
  renderPeriods(s);
  const buildings = (Array.isArray(s.buildings) ? s.buildings : []).filter((b) => b && b.building != null)
    .sort((a, b) => (a.building === "") - (b.building === "") // the meters in no building last
      || String(a.building).localeCompare(String(b.building)));
  syncRows($("#buildings"), buildings, (b) => b.building, buildBuildingRow, updateBuildingRow);
}

function renderMeters(data) {
  const meters = (Array.isArray(data.meters) ? data.meters : []).filter((m) => m && m.meter_id != null);
  syncRows($("#meters"), meters, (m) => m.meter_id, buildMeterRow, updateMeterRow);
  if (detail.id !== null) renderDetailFacts();
}

// ---------------------------------------------------------------- meter detail
const detail = { el: $("#meter-detail"), id: null, opener: null };
const detailPath = (id) => `api/series?meter=${encodeURIComponent(id)}&step=5m`;

function renderDetailFacts() {
  const m = ((state.meters && state.meters.meters) || []).find((x) => x && String(x.meter_id) === detail.id) || {};
  const where = [m.building, m.floor != null ? `floor ${m.floor}` : null].filter((x) => x != null);
  $("#detail-where").textContent = where.length ? where.join(" · ") : "—";
  $("#detail-online").textContent = m.online === undefined ? "—" : m.online ? "online" : "offline";
  setNumber($("#detail-power"), kW(m.power_w), fmtKW);
  setTime($("#detail-last"), m.last_window);
}
function renderDetailSeries(series) {
  const data = chartMeter.update(series);
  const points = series && Array.isArray(series.points) ? series.points : [];
  const total = (key) => {
    const wh = points.map((p) => p && p[key]).filter(isNum);
    return wh.length ? kWh(wh.reduce((a, b) => a + b, 0)) : null;
  };
  setNumber($("#detail-kwh"), total("energy_wh"), fmtKWh);
  setIfAny($("#detail-estimate"), $("#detail-estimated-kwh"), total("estimated_wh"));
  const exported = total("export_wh"), guessed = total("estimated_export_wh");
  $("#detail-flows").hidden = !(nonZero(exported) || nonZero(guessed));
  setNumber($("#detail-export-kwh"), $("#detail-flows").hidden ? null : exported, fmtKWh);
  setIfAny($("#detail-estimate-export"), $("#detail-estimated-export-kwh"), guessed);
  const peak = peakOf(data);
  setNumber($("#detail-peak"), peak ? peak.v : null, fmtKW);
}
async function loadDetail() {
  const id = detail.id;
  const error = $("#detail-error");
  try {
    const series = await getJSON(detailPath(id));
    if (detail.id !== id) return;
    error.hidden = true;
    renderDetailSeries(series);
  } catch (e) {
    if (detail.id !== id) return;
    chartMeter.fail();
    error.hidden = false;
    error.textContent = e instanceof HttpError && e.status === 404
      ? "The server does not know this meter."
      : `Couldn't load this meter's data (${clock.format(Date.now())}); showing what was last received.`;
  }
}
function openDetail(id, opener) {
  detail.id = id;
  detail.opener = opener;
  $("#detail-title").textContent = `Meter ${id}`;
  ["#detail-kwh", "#detail-peak"].forEach((sel) => setNumber($(sel), null, fmtKW));
  for (const id of ["#detail-flows", "#detail-estimate", "#detail-estimate-export"]) $(id).hidden = true;
  chartMeter.clear();
  renderDetailFacts();
  if (!detail.el.open) detail.el.showModal();
  loadDetail();
}
detail.el.addEventListener("close", () => {
  detail.id = null;
  if (detail.opener && detail.opener.isConnected) detail.opener.focus();
});
$("#detail-close").addEventListener("click", () => detail.el.close());
detail.el.addEventListener("click", (e) => { if (e.target === detail.el) detail.el.close(); }); // backdrop
$("#meters").tBodies[0].addEventListener("click", (e) => {
  const tr = e.target.closest("tr[data-key]");
  if (tr) openDetail(tr.dataset.key, tr.querySelector("button"));
});

// ---------------------------------------------------------------- sites
const sites = { list: null }; // /api/sites once known: [{id, name, …}], the default first
const picker = $("#site-select");
const ALL_SITES = "All sites";

function siteInAddress() {
  return new URL(window.location.href).searchParams.get("site");
}

/** The site's name in the header and the title, and the picker, when there are several. */
function renderSite() {
  const list = sites.list || [];
  const several = list.length > 1;
  const found = list.find((x) => x.id === currentSite());
  place.name = several ? (found ? String(found.name || found.id) : ALL_SITES) : null;
  $("#site-name").textContent = place.name || "";
  $("#site-name").hidden = !several;
  $("#site-picker").hidden = !several;
  if (several) picker.value = found ? found.id : "";
  document.title = pageTitle();
}

function renderSites(answer) {
  const list = (Array.isArray(answer && answer.sites) ? answer.sites : [])
    .filter((x) => x && typeof x.id === "string");
  sites.list = list;
  app.dataset.sites = String(list.length); // for scripts (and tests): the sites are known
  if (list.length > 1) {
    const options = [new Option(ALL_SITES, ""), ...list.map((x) => new Option(String(x.name || x.id), x.id))];
    picker.replaceChildren(...options);
  }
  // a site the API does not serve (a stale link): show what it serves instead
  if (currentSite() !== null && !list.some((x) => x.id === currentSite())) chooseSite(null, "replace");
  renderSite();
}

/** Show another site: every figure of the one before is forgotten and fetched afresh.
 *  `how` keeps it in the address: "push" (a new history entry), "replace", or "none". */
function chooseSite(id, how) {
  id = id || null;
  if (id === currentSite()) return;
  setSite(id);
  if (how !== "none") {
    const url = new URL(window.location.href);
    if (id) url.searchParams.set("site", id); else url.searchParams.delete("site");
    if (routedBuilding() !== null) url.hash = ""; // a building is in one site: back to the campus
    history[how === "push" ? "pushState" : "replaceState"](null, "", url);
    route(false);
  }
  Object.assign(state, { health: null, summary: null, meters: null, model: null, overview: null });
  delete app.dataset.shownSite;
  for (const chart of [chart24h, chart30d]) chart.clear();
  renderDailyKey();
  if (detail.el.open) detail.el.close();
  renderSite();
  tick();
}
picker.addEventListener("change", () => chooseSite(picker.value, "push"));
// back and forward between sites (a fragment's change is the hashchange's)
window.addEventListener("popstate", () => chooseSite(siteInAddress(), "none"));
setSite(siteInAddress());

async function loadSites() {
  if (sites.list !== null) return;
  try { renderSites(await getJSON("api/sites", { site: false })); } catch (_) { /* next refresh */ }
}

// ---------------------------------------------------------------- refresh loop
let lastOkAt = null;
let staleSince = null;
function renderStale(failure) {
  const note = $("#stale-note");
  if (!failure) { staleSince = null; lastOkAt = Date.now(); note.hidden = true; return; }
  if (staleSince === null) staleSince = Date.now();
  note.hidden = false;
  note.textContent = `Stale since ${clock.format(staleSince)} — ${failure}` +
    (lastOkAt ? `; showing values last updated at ${clock.format(lastOkAt)}.` : ".");
}

const jobs = [ // [path, apply the JSON, on failure]: the campus's, on either view
  ["api/health", (h) => { state.health = h; }, () => {}],
  ["api/buildings", (m) => { state.model = m; }, () => {}],
  ["api/summary", (s) => { state.summary = s; renderSummary(s); }, () => {}],
  ["api/meters", (m) => { state.meters = m; renderMeters(m); }, () => {}],
  ["api/series?step=5m", (s) => chart24h.update(s), () => chart24h.fail()],
  ["api/series?step=1d", (s) => { chart30d.update(s); renderDailyKey(); }, () => chart30d.fail()],
  ["api/cost/overview", (o) => { state.overview = o; renderOverview(o, state.model); }, () => {}],
];

/** Fetch the jobs' paths together and apply each answer in the jobs' order; what failed, in words. */
async function run(list) {
  const asked = currentSite();
  const results = await Promise.allSettled(list.map(([path]) => getJSON(path)));
  if (currentSite() !== asked) return null; // another site was chosen meanwhile: its turn next
  // the site's zone first: every time drawn below is on its clock
  results.forEach((r) => { if (r.status === "fulfilled" && r.value) setZone(r.value.timezone); });
  let failure = null;
  results.forEach((r, i) => {
    const [path, apply, onFail] = list[i];
    if (r.status === "fulfilled" && r.value && typeof r.value === "object") {
      try { apply(r.value); } catch (e) { failure = "the page could not show new data"; console.error(`rendering ${path}`, e); }
      return;
    }
    onFail(r.reason);
    failure = failureText(r.reason);
    const body = r.reason instanceof HttpError ? r.reason.body : null;
    // A 503 from /api/health still tells us something: keep the last facts, show the status.
    if (path === "api/health" && body && body.status === "unavailable") {
      state.health = { ...(state.health || {}), ...body };
    } else if (path === "api/health" && !(r.reason instanceof HttpError) && state.health === null) {
      state.health = { status: "unavailable" };
    }
  });
  return failure;
}

async function refresh() {
  // the alerts alongside (their failure is said in their panel, not as stale data)
  let [failure] = await Promise.all([run(jobs), refreshAlerts(), loadSites()]);
  renderHeader();
  // whose figures the page shows now (for scripts, and tests): the summary's site, "" the whole
  if (state.summary) app.dataset.shownSite = typeof state.summary.site === "string" ? state.summary.site : "";
  if (routedBuilding() !== null) {
    renderBuilding(state.model, state.overview, state.summary);
    // a building's 404 is said on its page; the campus's data is not stale for it
    const found = await run(buildingJobs(state.overview));
    if (found && !/HTTP 404/.test(found)) failure = failure || found;
  }
  renderStale(failure);
  if (detail.id !== null) await loadDetail();
}

// ---------------------------------------------------------------- the two views
function route(moveFocus) {
  const name = routedBuilding();
  if (!showBuilding(name)) return;
  if (name !== null) renderBuilding(state.model, state.overview, state.summary);
  if (!moveFocus) return;
  window.scrollTo(0, 0);
  if (name !== null) $("#building-title").focus({ preventScroll: true });
}
window.addEventListener("hashchange", () => { route(true); tick(); });
route(false);

let timer = null;
let running = false;
let again = false; // asked for while a refresh ran (another view): one more, right after
async function tick() {
  if (running) { again = true; return; }
  running = true;
  clearTimeout(timer);
  try { if (!document.hidden) await refresh(); } finally {
    running = false;
    timer = setTimeout(tick, again ? 0 : REFRESH_S * 1000);
    again = false;
  }
}
document.addEventListener("visibilitychange", () => { if (!document.hidden) tick(); });
tick();
