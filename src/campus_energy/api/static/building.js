/* A building's page (#building=<name>): its meters and virtual meters, tariff and opening
 * hours (/api/buildings), this month's bill line by line with its exports (/api/bills) and
 * the month's demand with its peak and ratchet floor (/api/demand). The bill states its
 * estimated energy and the building's export apart, only where there is some: the export
 * is stated, never priced. */

import { HttpError, place, sited } from "./api.js";
import {
  estimateWords, nonZeroDecimal, setEstimate, setMoney, setPeak,
} from "./billing.js";
import {
  chartSlot, demandColumns, demandOptions, describeDemand, monthFloor,
} from "./charts.js";
import {
  $, addDays, dateTime, fmtDate, fmtDecimal, fmtDecimalKWh, fmtKWh, fmtMoney, fmtMonth, fmtPct, fmtRate,
  isDecimal, isNum, make, midnightOf, nf0, parseTime, setDecimal, setNumber, syncRows,
} from "./format.js";

const shown = { name: null, entry: {}, bill: null, range: [0, 1] };
export const demandChart = chartSlot($("#chart-demand"), demandOptions, demandColumns,
  () => shown.range, (data, source) => describeDemand(shown.name)(data, source));

/** The building the address names (#building=ECE), or null for the campus view. */
export function routedBuilding() {
  const m = /^#building=(.+)$/.exec(window.location.hash);
  if (!m) return null;
  try { return decodeURIComponent(m[1]); } catch (_) { return null; }
}

/** Switch the page to a building (or back to the campus: null); true when it changed. */
export function showBuilding(name) {
  $("#campus-view").hidden = name !== null;
  $("#building-view").hidden = name === null;
  document.title = pageTitle(name);
  if (name === shown.name) return false;
  shown.name = name;
  shown.entry = {};
  shown.bill = null;
  if (name === null) return true;
  $("#building-title").textContent = name;
  $("#building-missing").hidden = true;
  for (const table of ["#bill", "#building-meters", "#building-virtual", "#opening-hours"]) {
    $(table).tBodies[0].replaceChildren();
  }
  for (const el of document.querySelectorAll("#building-view [data-value]")) {
    el.textContent = "—";
    delete el.dataset.value;
  }
  for (const id of ["#bill-facts", "#bill-events", "#building-peak-at", "#building-minimum", "#holidays"]) {
    $(id).textContent = "";
  }
  $("#bill-events-block").hidden = true;
  demandChart.clear();
  return true;
}

const query = (name) => encodeURIComponent(name);

/** The page's title: the building's, the site's (of several), "Campus Energy". */
export function pageTitle(building = shown.name) {
  return [building, place.name, "Campus Energy"].filter((x) => x !== null).join(" · ");
}

/** What the building's page fetches besides the campus's: [path, apply, on failure]. */
export function buildingJobs(overview) {
  const name = shown.name;
  const month = overview && overview.month;
  const today = overview && overview.today && overview.today.date;
  if (name === null || !month || !isDecimalDay(month.first_day) || !isDecimalDay(today)) return [];
  const key = month.first_day.slice(0, 7);
  const still = (apply) => (value) => { if (shown.name === name) apply(value); }; // not another's
  return [
    [`api/bills?month=${key}&building=${query(name)}`, still((answer) => renderBill(answer, key)), still(missing)],
    [`api/demand?building=${query(name)}&start_date=${month.first_day}&end_date=${today}`,
      still((answer) => renderDemandChart(answer, month.first_day, today)),
      still((e) => { missing(e); demandChart.fail(); })],
  ];
}
const isDecimalDay = (s) => typeof s === "string" && /^\d{4}-\d{2}-\d{2}$/.test(s);

function missing(reason) {
  if (!(reason instanceof HttpError && reason.status === 404)) return;
  const note = $("#building-missing");
  note.hidden = false;
  note.textContent = `The campus has no building named “${shown.name}”.`;
}

// ---------------------------------------------------------------- facts, meters, opening hours
const KINDS = {
  main: () => "Main meter (the building's total)",
  "sub-meter": (m) => `Sub-meter of ${m.parent}`,
  "top-level": () => "Top-level meter",
};
const DAYS = [["mon", "Monday"], ["tue", "Tuesday"], ["wed", "Wednesday"], ["thu", "Thursday"],
  ["fri", "Friday"], ["sat", "Saturday"], ["sun", "Sunday"]];

/** The building's facts from the campus model and its row of the overview; its generation,
 *  net and estimates this month from its row of the summary, where it has any. */
export function renderBuilding(model, overview, summary) {
  if (shown.name === null) return;
  const entry = ((model && model.buildings) || []).find((b) => b && b.name === shown.name);
  const row = ((overview && overview.buildings) || []).find((b) => b && b.name === shown.name) || {};
  renderFlows(((summary && summary.buildings) || []).find((b) => b && b.building === shown.name) || {});
  if (model && !entry) {
    const note = $("#building-missing");
    note.hidden = false;
    note.textContent = `The campus has no building named “${shown.name}”.`;
  }
  const b = entry || {};
  shown.entry = b;
  $("#building-tariff").textContent = b.tariff || (entry ? "none: not priced" : "—");
  setNumber($("#building-area"), b.floor_area_m2, (v) => (isNum(v) ? nf0.format(v) : "not set"));
  $("#building-basis").textContent = b.basis || "—";
  setDecimal($("#building-kwh"), row.energy_kwh);
  setEstimate($("#building-kwh-estimate"), row.estimated_kwh, overview && overview.estimated_counted);
  setDecimal($("#building-kwh-m2"), row.kwh_per_m2);
  const priced = [setMoney($("#building-cost"), row, "total", row.currency),
    setMoney($("#building-projected"), row, "projected_total", row.currency)].some(Boolean);
  document.querySelectorAll("#building-facts .money").forEach((el) => { el.hidden = !priced; });
  renderMeters(b);
  renderHours(b.occupancy);
}

const nonZero = (v) => isNum(v) && v !== 0;
function renderFlows(b) {
  const flows = nonZero(b.month_export_kwh) || nonZero(b.month_estimated_export_kwh);
  const estimated = nonZero(b.month_estimated_kwh) || nonZero(b.month_estimated_export_kwh);
  document.querySelectorAll("#building-facts .flows").forEach((el) => { el.hidden = !flows; });
  $("#building-facts .estimate").hidden = !estimated;
  setNumber($("#building-export-kwh"), flows ? b.month_export_kwh : null, fmtKWh);
  setNumber($("#building-net-kwh"), flows ? b.month_net_kwh : null, fmtKWh);
  setNumber($("#building-estimated-kwh"), estimated ? b.month_estimated_kwh : null, fmtKWh);
  $("#building-estimated-export").hidden = !nonZero(b.month_estimated_export_kwh);
  setNumber($("#building-estimated-export-kwh"), nonZero(b.month_estimated_export_kwh)
    ? b.month_estimated_export_kwh : null, fmtKWh);
}

function buildMeterRow(withFloor) {
  return () => {
    const tr = make("tr");
    const name = make("th");
    name.scope = "row";
    tr.append(name, make("td"), ...(withFloor ? [make("td", "opt")] : []), make("td", "num"), make("td", "num"));
    return tr;
  };
}
function setUse(cells, use) {
  setDecimal(cells[0], use && use.energy_kwh); // measured import
  if (use && nonZeroDecimal(use.estimated_kwh)) {
    cells[0].append(figureNote("estimate-note meter-estimate", "+ est. ", use.estimated_kwh));
  }
  if (use && nonZeroDecimal(use.export_kwh)) {
    cells[0].append(figureNote("estimate-note meter-export", "exported ", use.export_kwh));
  }
  setNumber(cells[1], use && isNum(use.share) ? use.share : null, fmtPct);
}
function renderMeters(b) {
  const uses = new Map(((shown.bill && shown.bill.meter_energy) || []).map((m) => [m.id, m]));
  const meters = (Array.isArray(b.meters) ? b.meters : []).filter((m) => m && m.id != null);
  syncRows($("#building-meters"), meters, (m) => m.id, buildMeterRow(true), (tr, m) => {
    tr.cells[0].textContent = m.id;
    const kind = KINDS[m.kind];
    tr.cells[1].textContent = kind ? kind(m) : String(m.kind ?? "—");
    tr.cells[1].dataset.kind = m.kind ?? "";
    tr.cells[2].textContent = m.floor || "—";
    setUse([tr.cells[3], tr.cells[4]], uses.get(m.id));
  });
  const virtual = (Array.isArray(b.virtual_meters) ? b.virtual_meters : []).filter((v) => v && v.id != null);
  syncRows($("#building-virtual"), virtual, (v) => v.id, buildMeterRow(false), (tr, v) => {
    tr.cells[0].textContent = v.id;
    tr.cells[1].replaceChildren(make("code", null, v.expression ?? ""));
    setUse([tr.cells[2], tr.cells[3]], uses.get(v.id));
  }, null);
  $("#virtual-block").hidden = virtual.length === 0;
}

function renderHours(occupancy) {
  const table = $("#opening-hours");
  const known = Boolean(occupancy && typeof occupancy === "object");
  const rows = known ? DAYS.map(([key, day]) => ({ key, day, spans: occupancy[key] || [] })) : [];
  syncRows(table, rows, (r) => r.key, () => {
    const tr = make("tr");
    const day = make("th");
    day.scope = "row";
    tr.append(day, make("td"));
    return tr;
  }, (tr, r) => {
    tr.cells[0].textContent = r.day;
    tr.cells[1].textContent = r.spans.length ? r.spans.map((s) => String(s).replace("-", "–")).join(", ") : "Closed";
    tr.classList.toggle("closed", r.spans.length === 0);
  });
  table.closest(".table-wrap").hidden = !known;
  const holidays = known && Array.isArray(occupancy.holidays) ? occupancy.holidays : [];
  $("#holidays").textContent = holidays.length ? `Closed on holidays: ${holidays.map(fmtDate).join(", ")}.` : "";
}

// ---------------------------------------------------------------- the bill
/** A span "<words><figure>" keeping the figure's decimal string in data-value. */
function figureNote(className, words, s, id) {
  const note = make("span", className, `${words}${fmtDecimal(s)}`);
  note.dataset.value = s;
  if (id) note.id = id;
  return note;
}
/** A kWh figure of the bill's facts, by id: its decimal string kept in data-value. */
function kwhFigure(id, s) {
  const el = make("span", null, fmtDecimal(s));
  el.id = id;
  el.dataset.value = s;
  return el;
}
/** The bill's energy, with its estimated part where it has one ("of which estimated …", or
 *  "estimated …, not billed"); its export, measured and estimated, stated and not priced. */
function energyFacts(bill) {
  const energy = make("span", null, "Energy ");
  energy.append(kwhFigure("bill-energy-kwh", bill.energy_kwh), " kWh");
  if (nonZeroDecimal(bill.estimated_kwh)) {
    const part = make("span", null, ` (${estimateWords(bill.estimated_counted)} `);
    part.id = "bill-estimate";
    part.title = "estimated from the meters' registers across gaps in the data";
    part.append(kwhFigure("bill-estimated-kwh", bill.estimated_kwh), " kWh)");
    energy.append(part);
  }
  const facts = [energy];
  const exported = nonZeroDecimal(bill.export_kwh), guessed = nonZeroDecimal(bill.estimated_export_kwh);
  if (exported || guessed) {
    const out = make("span", null, "Exported ");
    out.id = "bill-export";
    out.append(kwhFigure("bill-export-kwh", isDecimal(bill.export_kwh) ? bill.export_kwh : "0.000"), " kWh");
    if (guessed) out.append(", estimated ", kwhFigure("bill-estimated-export-kwh", bill.estimated_export_kwh), " kWh");
    out.append(" (not priced: no feed-in tariff)");
    facts.push(out);
  }
  return facts;
}

function renderBill(answer, key) {
  const bill = (answer && Array.isArray(answer.bills) ? answer.bills : []).find((b) => b && b.account === shown.name);
  $("#bill-month").textContent = fmtMonth(key);
  const q = `month=${key}&building=${query(shown.name)}`;
  $("#bill-csv").href = sited(`api/bills.csv?${q}`);
  $("#bill-xlsx").href = sited(`api/bills.xlsx?${q}`);
  if (!bill || bill === shown.bill) return;
  shown.bill = bill;
  const currency = typeof bill.currency === "string" ? bill.currency : null;
  const priced = currency !== null && isDecimal(bill.total);
  $("#bill-wrap").hidden = !priced;
  $("#bill-unpriced").hidden = priced;
  $("#bill").tBodies[0].replaceChildren(...(priced ? bill.lines : []).map((x) => {
    const tr = make("tr");
    tr.dataset.kind = x.kind;
    if (x.estimated === true) tr.classList.add("estimated"); // "Energy, peak (estimated)"
    const item = make("th", null, x.description); // a part of a month says so: "(… 16 of 30 days)"
    item.scope = "row";
    const cells = [make("td", "num"), make("td", "opt", x.unit), make("td", "num"), make("td", "num")];
    setDecimal(cells[0], x.quantity);
    cells[0].dataset.unit = x.unit; // shown beside the quantity where the unit column is left out
    setDecimal(cells[2], x.rate, (s) => fmtRate(s, currency));
    setDecimal(cells[3], x.amount, (s) => fmtMoney(s, currency));
    tr.append(item, ...cells);
    return tr;
  }));
  setDecimal($("#bill-total"), bill.total, (s) => fmtMoney(s, currency));
  const facts = energyFacts(bill);
  if (bill.emissions && isDecimal(bill.emissions.co2_kg) && Number(bill.emissions.co2_kg) > 0) {
    facts.push(`CO₂ ${fmtDecimalKWh(bill.emissions.co2_kg)} kg`);
  }
  if (isNum(bill.coverage)) facts.push(`${fmtPct(bill.coverage)} of the month's time covered by data`);
  if (isDecimal(bill.unpriced_kwh) && Number(bill.unpriced_kwh) > 0) {
    facts.push(`${fmtDecimal(bill.unpriced_kwh)} kWh before the tariff's first version, not priced`);
  }
  $("#bill-facts").replaceChildren(...facts.flatMap((f, i) => (i ? [" · ", f] : [f])), ".");
  renderEvents(bill.meter_events);

  const demand = Array.isArray(bill.demand) && bill.demand.length ? bill.demand[bill.demand.length - 1] : {};
  setPeak($("#building-peak"), $("#building-peak-at"), bill.peak);
  setPeak($("#building-peak-previous"), null, bill.previous_month_peak);
  setDecimal($("#building-floor"), demand.ratchet_floor_kw);
  setDecimal($("#building-billed"), demand.billed_kw);
  $("#building-minimum").textContent = isDecimal(demand.minimum_kw) && Number(demand.minimum_kw) > 0
    ? `the tariff's minimum: ${fmtDecimal(demand.minimum_kw)} kW` : "";
  const minutes = isNum(demand.interval_min) ? demand.interval_min : bill.demand_interval_min;
  $("#building-demand-interval").textContent = isNum(minutes) ? `${minutes}-minute averages` : "";
  renderMeters(shown.entry); // their energy this month
}

/** The month's meter events of the bill's meters (a register replaced, reset, rolled over or
 *  jumping), where the API could read the record: none, or no record (null), shows nothing. */
function renderEvents(events) {
  const found = (Array.isArray(events) ? events : []).filter((e) => e && typeof e.meter === "string");
  $("#bill-events-block").hidden = found.length === 0;
  $("#bill-events").replaceChildren(...found.map((e) => {
    const at = parseTime(e.at);
    const li = make("li", null, `${e.meter} ${e.kind} (${e.source})`
      + `${at === null ? "" : `, ${dateTime.format(at)}`}${e.note ? `: ${e.note}` : ""}`);
    li.dataset.kind = e.kind;
    return li;
  }));
}

// ---------------------------------------------------------------- the demand chart
function renderDemandChart(answer, first, today) {
  const start = midnightOf(first), end = midnightOf(addDays(today, 1));
  shown.range = start !== null && end !== null && end > start ? [start, end] : [0, 1];
  demandChart.update(answer);
  $("#demand-key-floor").hidden = monthFloor(answer) === null;
}
