/* Money, carbon and demand on the campus view, all from /api/cost/overview: the cost cards
 * (today, the month so far and its projection, CO₂), the campus's peak against last month's
 * with each building's peak against its ratchet floor, and the buildings ranked by kWh/m².
 * A name the campus model (/api/buildings) knows links to its building page. Billed energy
 * states its estimated part apart, only where there is one: "of which estimated" when bills
 * count it (billing.include_estimated), else "estimated, not billed". */

import { sited } from "./api.js";
import {
  $, dateTime, fmtDecimalKWh, fmtMoney, fmtMonth, fmtPct, fmtTotals, isDecimal, isNum, make, nf0,
  parseTime, setDecimal, setNumber, syncRows,
} from "./format.js";

const buildingHref = (name) => `#building=${encodeURIComponent(name)}`;
/** An account's name: a building's, or the meters in no building's (""). */
const accountName = (name) => (name ? name : "Meters in no building");

/** Whether the campus model has a page for this name. */
function hasPage(model, name) {
  return Boolean(name) && Array.isArray(model && model.buildings)
    && model.buildings.some((b) => b && b.name === name);
}
/** A row's name cell: a link to the building's page when there is one, else the name. */
export function setName(cell, name, model) {
  const label = accountName(name);
  const link = hasPage(model, name) ? buildingHref(name) : null;
  const current = cell.firstElementChild;
  if (link && current && current.tagName === "A" && current.getAttribute("href") === link) return;
  if (link) {
    const a = make("a", null, label);
    a.href = link;
    cell.replaceChildren(a);
  } else if (current || cell.textContent !== label) cell.replaceChildren(label);
}

/** An amount of the overview (`total`, `projected_total`) in its one currency, or one per
 *  currency ("€1.00 + ₹90.00"); false when nothing is priced. The string is kept in data-value. */
export function setMoney(el, part, name, currency) {
  const one = part && part[name];
  if (typeof currency === "string" && isDecimal(one)) {
    el.textContent = fmtMoney(one, currency);
    el.dataset.value = one;
    el.dataset.currency = currency;
    return true;
  }
  delete el.dataset.value;
  delete el.dataset.currency;
  const many = (part && part[`${name}s`]) || {};
  el.textContent = fmtTotals(many);
  return Object.keys(many).length > 0;
}

/** A peak document's kW and when it began (site time), or "no data" for a month without. */
export function setPeak(valueEl, atEl, peak) {
  setDecimal(valueEl, peak && peak.kw);
  if (!atEl) return;
  const ms = parseTime(peak && peak.start);
  atEl.textContent = ms === null ? "no data" : dateTime.format(ms);
  if (atEl instanceof HTMLTimeElement) {
    if (ms === null) atEl.removeAttribute("datetime"); else atEl.dateTime = peak.start;
  }
}

/** Buildings by name, the meters in no building ("") last. */
const byName = (a, b) => (a.name === "") - (b.name === "") || a.name.localeCompare(b.name);

// ---------------------------------------------------------------- estimated energy
/** Whether a decimal string is a figure other than zero. */
export const nonZeroDecimal = (s) => isDecimal(s) && Number(s) !== 0;
const ESTIMATED = "estimated from the meters' registers across gaps in the data";
/** What an estimate is called beside billed energy: part of it, or left out of it. */
export const estimateWords = (counted) => (counted === false ? "estimated, not billed:" : "of which estimated");

/** A note after a billed energy figure for its estimated part ("of which est. 3.10", or
 *  "est. 3.10, not billed"), its decimal string in data-value; none where it is zero. */
export function appendEstimate(el, estimated, counted) {
  if (!nonZeroDecimal(estimated)) return;
  const text = counted === false ? `est. ${fmtDecimalKWh(estimated)}, not billed` : `of which est. ${fmtDecimalKWh(estimated)}`;
  const note = make("span", "estimate-note", text);
  note.dataset.value = estimated;
  note.title = ESTIMATED;
  el.append(note);
}

/** A billed energy's estimate in its own box ("of which estimated 3.10 kWh": the words in
 *  its .what, the figure in its .estimated-kwh), shown only where there is one. */
export function setEstimate(box, estimated, counted) {
  const any = nonZeroDecimal(estimated);
  box.hidden = !any;
  box.querySelector(".what").textContent = estimateWords(counted);
  setDecimal(box.querySelector(".estimated-kwh"), any ? estimated : null, fmtDecimalKWh);
  box.title = any ? ESTIMATED : "";
}

// ---------------------------------------------------------------- cost cards
function renderCost(o) {
  const section = $("#cost");
  const today = o.today || {}, month = o.month || {};
  const currency = typeof o.currency === "string" ? o.currency : null;
  const priced = [
    setMoney($("#cost-today"), today, "total", currency),
    setMoney($("#cost-month"), month, "total", currency),
    setMoney($("#cost-projected"), month, "projected_total", currency),
  ].some(Boolean);
  // CO₂ needs a grid factor: without one every kWh is "without factor" and the sum is 0
  const carbon = isDecimal(month.co2_kg) && Number(month.co2_kg) > 0;
  setDecimal($("#co2-today"), today.co2_kg, fmtDecimalKWh);
  setDecimal($("#co2-month"), month.co2_kg, fmtDecimalKWh);
  setDecimal($("#cost-today-kwh"), today.energy_kwh, fmtDecimalKWh);
  setDecimal($("#cost-month-kwh"), month.energy_kwh, fmtDecimalKWh);
  setEstimate($("#cost-today-estimate"), today.estimated_kwh, o.estimated_counted);
  setEstimate($("#cost-month-estimate"), month.estimated_kwh, o.estimated_counted);
  section.querySelectorAll(".money").forEach((el) => { el.hidden = !priced; });
  section.querySelectorAll(".carbon").forEach((el) => { el.hidden = !carbon; });
  section.hidden = !priced && !carbon;
  $("#cost-heading").textContent = priced && carbon ? "Cost and carbon" : priced ? "Cost" : "Carbon";

  const name = fmtMonth(month.first_day);
  const assumes = `Projection: energy charges go on at the pace of the month so far (${fmtPct(month.elapsed_share)}`
    + ` of ${name} has passed); standing and demand charges are counted for the whole month,`
    + " at the demand billed so far.";
  $("#projection-assumes").textContent = assumes;
  $("#projection").title = assumes;
  const key = /^\d{4}-\d{2}/.exec(month.first_day || "");
  if (key) {
    $("#bills-csv").href = sited(`api/bills.csv?month=${key[0]}`);
    $("#bills-xlsx").href = sited(`api/bills.xlsx?month=${key[0]}`);
  }
}

// ---------------------------------------------------------------- demand
function peakChange(peak, previous) {
  if (!peak || !previous || !(Number(previous.kw) > 0)) return "";
  const change = Number(peak.kw) / Number(previous.kw) - 1;
  if (Math.abs(change) < 0.0005) return "The same as last month's peak.";
  return `${fmtPct(Math.abs(change))} ${change < 0 ? "below" : "above"} last month's peak.`;
}

function buildDemandRow() {
  const tr = make("tr");
  const name = make("th");
  name.scope = "row";
  const bar = make("span", "demand-bar");
  bar.setAttribute("aria-hidden", "true");
  bar.append(make("span", "demand-billed"), make("span", "demand-fill"), make("span", "demand-floor"));
  const barCell = make("td", "opt bar-col");
  barCell.append(bar);
  tr.append(name, make("td", "num"), make("td", "num opt"), make("td", "num"), make("td", "num"), barCell);
  return tr;
}
function updateDemandRow(tr, b, model) {
  setName(tr.cells[0], b.name, model);
  setPeak(tr.cells[1], null, b.peak);
  const at = parseTime(b.peak && b.peak.start);
  if (at === null) tr.cells[1].removeAttribute("title"); else tr.cells[1].title = `at ${dateTime.format(at)}`;
  setPeak(tr.cells[2], null, b.previous_month_peak);
  setDecimal(tr.cells[3], b.ratchet_floor_kw);
  setDecimal(tr.cells[4], b.billed_kw);
  const peak = b.peak ? Number(b.peak.kw) : 0;
  const floor = isDecimal(b.ratchet_floor_kw) ? Number(b.ratchet_floor_kw) : null;
  const raised = isDecimal(b.billed_kw) && Number(b.billed_kw) > peak;
  tr.cells[4].classList.toggle("raised", raised);
  if (raised) tr.cells[4].title = "Billed above this month's peak: the ratchet floor or the tariff's minimum";
  else tr.cells[4].removeAttribute("title");
  const billed = isDecimal(b.billed_kw) ? Number(b.billed_kw) : 0;
  const previous = b.previous_month_peak ? Number(b.previous_month_peak.kw) : 0;
  const scale = Math.max(peak, floor || 0, billed, previous) * 1.05;
  const share = (v) => `${scale > 0 ? Math.min(100, (v / scale) * 100) : 0}%`;
  tr.querySelector(".demand-fill").style.width = share(peak);
  tr.querySelector(".demand-billed").style.width = share(billed); // beyond the peak: what the floor adds
  const mark = tr.querySelector(".demand-floor");
  mark.hidden = floor === null;
  if (floor !== null) mark.style.left = share(floor);
}

function renderDemand(o, model) {
  const d = o.campus_demand || {};
  const rows = (Array.isArray(o.buildings) ? o.buildings : []).filter((b) => b && typeof b.name === "string")
    .sort(byName);
  $("#demand").hidden = !(d.peak || d.previous_month_peak || rows.length);
  $("#demand-interval").textContent = isNum(d.interval_min) ? `${d.interval_min}-minute averages, site time` : "";
  setPeak($("#campus-peak"), $("#campus-peak-at"), d.peak);
  setPeak($("#campus-peak-previous"), $("#campus-peak-previous-at"), d.previous_month_peak);
  $("#campus-peak-change").textContent = peakChange(d.peak, d.previous_month_peak);
  syncRows($("#building-demand"), rows, (b) => b.name, buildDemandRow, (tr, b) => updateDemandRow(tr, b, model));
}

// ---------------------------------------------------------------- kWh/m² ranking
function buildRankRow() {
  const tr = make("tr");
  const name = make("th");
  name.scope = "row";
  const bar = make("span", "share-bar");
  bar.setAttribute("aria-hidden", "true");
  bar.append(make("span", "share-fill"));
  const share = make("span", "share");
  share.append(bar, make("span", "share-text"));
  const cell = make("td", "intensity-col");
  cell.append(share);
  tr.append(make("td", "num rank-col"), name, cell, make("td", "num"), make("td", "num opt"));
  return tr;
}
function updateRankRow(tr, b, model, top, counted) {
  tr.cells[0].textContent = nf0.format(b.rank);
  setName(tr.cells[1], b.name, model);
  setDecimal(tr.querySelector(".share-text"), b.kwh_per_m2);
  tr.querySelector(".share-fill").style.width = `${top > 0 ? Math.min(100, (Number(b.kwh_per_m2) / top) * 100) : 0}%`;
  setDecimal(tr.cells[3], b.energy_kwh);
  appendEstimate(tr.cells[3], b.estimated_kwh, counted);
  setNumber(tr.cells[4], b.floor_area_m2, (v) => (isNum(v) ? nf0.format(v) : "—"));
}
function buildApartRow() {
  const tr = make("tr");
  const name = make("th");
  name.scope = "row";
  tr.append(name, make("td", "num"));
  return tr;
}

function renderIntensity(o, model) {
  const all = (Array.isArray(o.buildings) ? o.buildings : []).filter((b) => b && typeof b.name === "string");
  // the API ranks them: highest kWh/m² first, those without a floor area after
  const ranked = all.filter((b) => isDecimal(b.kwh_per_m2)).map((b, i) => ({ ...b, rank: i + 1 }));
  const apart = all.filter((b) => !isDecimal(b.kwh_per_m2)).sort(byName);
  $("#intensity").hidden = all.length === 0;
  const top = Math.max(0, ...ranked.map((b) => Number(b.kwh_per_m2)));
  const counted = o.estimated_counted;
  syncRows($("#intensity-ranking"), ranked, (b) => b.name, buildRankRow, (tr, b) => updateRankRow(tr, b, model, top, counted));
  syncRows($("#intensity-unranked"), apart, (b) => b.name, buildApartRow, (tr, b) => {
    setName(tr.cells[0], b.name, model);
    setDecimal(tr.cells[1], b.energy_kwh);
    appendEstimate(tr.cells[1], b.estimated_kwh, counted);
  }, null);
  $("#no-area").hidden = apart.length === 0;
}

/** The campus view's billing parts from an overview (and the model, for the links). */
export function renderOverview(o, model) {
  renderCost(o);
  renderDemand(o, model);
  renderIntensity(o, model);
}
