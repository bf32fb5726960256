/* How the dashboard writes numbers, money and times, and the few DOM helpers every part uses.
 *
 * Every time on the page is the site's clock (the API names its zone), 24-hour, whatever
 * the browser's zone: days, "today" and the charts are all counted at the site.
 * Money, kWh and kW that the API gives as decimal strings ("12.30") are formatted from the
 * string itself, never through a binary float, so the page shows exactly what was billed. */

export const $ = (sel, root = document) => root.querySelector(sel);

export function make(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

// ---------------------------------------------------------------- numbers
const fixed = [0, 1, 2, 3].map((d) => new Intl.NumberFormat(undefined,
  { minimumFractionDigits: d, maximumFractionDigits: d }));
export const nf0 = fixed[0];
const pct = new Intl.NumberFormat(undefined, { style: "percent", minimumFractionDigits: 1, maximumFractionDigits: 1 });

export const isNum = (v) => typeof v === "number" && Number.isFinite(v);
/** A value kept to `decimals` places: sums and unit changes add no float noise. */
const toPlaces = (v, decimals) => Number(v.toFixed(decimals));
// The API gives power to the mW and energy to the µWh: kW to 6 places, kWh to 9.
export const kW = (w) => (isNum(w) ? toPlaces(w / 1000, 6) : null);
export const kWh = (wh) => (isNum(wh) ? toPlaces(wh / 1000, 9) : null);
/** Decimals to show about three significant figures, never fewer than one:
 *  0.78 kW, 3.40 kW, 46.2 kW; 0.512 kWh, 43.05 kWh, 21,160.4 kWh. */
const kwPlaces = (v) => (Math.abs(v) < 10 ? 2 : 1);
const kwhPlaces = (v) => (Math.abs(v) < 10 ? 3 : Math.abs(v) < 100 ? 2 : 1);
export const fmtKW = (v) => (isNum(v) ? fixed[kwPlaces(v)].format(v) : "—");
export const fmtKWh = (v) => (isNum(v) ? fixed[kwhPlaces(v)].format(v) : "—");
export const fmtPct = (v) => (isNum(v) ? pct.format(v) : "—");

// ---------------------------------------------------------------- decimal strings and money
const DECIMAL = /^-?\d+(?:\.(\d+))?$/;
export const isDecimal = (s) => typeof s === "string" && DECIMAL.test(s);
const placesOf = (s) => (DECIMAL.exec(s)[1] || "").length;
const decimalFormats = new Map();
function decimalFormat(places, currency) {
  const key = `${currency || ""}|${places}`;
  if (!decimalFormats.has(key)) {
    const digits = { minimumFractionDigits: places, maximumFractionDigits: places };
    decimalFormats.set(key, new Intl.NumberFormat(undefined,
      currency ? { style: "currency", currency, ...digits } : digits));
  }
  return decimalFormats.get(key);
}
/** A decimal string, grouped, to its own places (or rounded half up to `places`). */
export function fmtDecimal(s, places) {
  return isDecimal(s) ? decimalFormat(places ?? placesOf(s)).format(s) : "—";
}
/** A decimal string of kWh (or kg) to about three significant figures, as fmtKWh. */
export const fmtDecimalKWh = (s) => (isDecimal(s) ? fmtDecimal(s, kwhPlaces(Number(s))) : "—");
/** An amount in its currency, to the places the bill states it with: "€1,234.50". */
export function fmtMoney(s, currency, places) {
  if (!isDecimal(s) || typeof currency !== "string" || !currency) return "—";
  try {
    return decimalFormat(places ?? placesOf(s), currency).format(s);
  } catch (_) { // a code Intl does not know
    return `${fmtDecimal(s, places)} ${currency}`;
  }
}
/** The minor unit's places of a currency (2 for EUR, 0 for JPY). */
function minorPlaces(currency) {
  try {
    return new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions().minimumFractionDigits;
  } catch (_) {
    return 2;
  }
}
/** A rate as configured, to at least its currency's minor unit: "8" as "€8.00", "0.1234" whole. */
export const fmtRate = (s, currency) => (isDecimal(s)
  ? fmtMoney(s, currency, Math.max(placesOf(s), minorPlaces(currency))) : "—");
/** Per-currency amounts ({EUR: "1.00", INR: "90.00"}) as "€1.00 + ₹90.00". */
export function fmtTotals(totals) {
  const found = Object.entries(totals || {}).filter(([, v]) => isDecimal(v));
  return found.length ? found.map(([c, v]) => fmtMoney(v, c)).join(" + ") : "—";
}

// ---------------------------------------------------------------- the site's clock
export const site = { zone: "UTC", formats: new Map() };
/** An Intl format in the site's zone, 24-hour clock (cached per zone and options). */
function siteFormat(name, options) {
  const key = `${site.zone}|${name}`;
  if (!site.formats.has(key)) {
    site.formats.set(key, new Intl.DateTimeFormat("en-GB", { ...options, timeZone: site.zone, hourCycle: "h23" }));
  }
  return site.formats.get(key);
}
const FORMATS = {
  dateTime: { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" },
  clock: { hour: "2-digit", minute: "2-digit" },
};
const fmtTime = (name) => ({ format: (ms) => siteFormat(name, FORMATS[name]).format(ms) });
export const dateTime = fmtTime("dateTime");
export const clock = fmtTime("clock");
// Site days are carried as UTC midnights: labelled in UTC they read as at the site.
const dayFormat = new Intl.DateTimeFormat("en-GB", { day: "numeric", month: "short", timeZone: "UTC" });
export const siteDay = { format: (ms) => dayFormat.format(ms) };
const longDayFormat = new Intl.DateTimeFormat("en-GB", { day: "numeric", month: "short", year: "numeric", timeZone: "UTC" });
const monthFormat = new Intl.DateTimeFormat("en-GB", { month: "long", year: "numeric", timeZone: "UTC" });
const ISO_DAY = /^(\d{4})-(\d{2})(?:-(\d{2}))?$/;
/** "2026-11-02" as "2 Nov 2026"; "2026-11" (or a day of it) as "November 2026". */
export function fmtDate(iso) {
  const m = ISO_DAY.exec(iso || "");
  return m && m[3] ? longDayFormat.format(Date.UTC(+m[1], +m[2] - 1, +m[3])) : iso || "—";
}
export function fmtMonth(iso) {
  const m = ISO_DAY.exec(iso || "");
  return m ? monthFormat.format(Date.UTC(+m[1], +m[2] - 1, 1)) : iso || "—";
}

export function setZone(zone) {
  if (typeof zone !== "string" || !zone || zone === site.zone) return;
  try { new Intl.DateTimeFormat("en-GB", { timeZone: zone }); } catch (_) { return; }
  site.zone = zone;
}
/** {y, m, d, h, min} of an instant on the site's clock. */
export function siteParts(ms) {
  const parts = {};
  for (const p of siteFormat("parts", { year: "numeric", month: "numeric", day: "numeric",
    hour: "numeric", minute: "numeric" }).formatToParts(ms)) parts[p.type] = Number(p.value);
  return { y: parts.year, m: parts.month, d: parts.day, h: parts.hour % 24, min: parts.minute };
}
/** The instant (s) a site day begins: its wall clock's offset is read at the UTC midnight
 *  of that date, and checked (a clock change between the two moves it by up to an hour). */
export function siteMidnight(y, m, d) {
  const utc = Date.UTC(y, m - 1, d) / 1000;
  const p = siteParts(utc * 1000);
  const guess = utc - (Date.UTC(p.y, p.m - 1, p.d, p.h, p.min) / 1000 - utc);
  for (const shift of [0, -3600, 3600, -1800, 1800]) {
    const q = siteParts((guess + shift) * 1000);
    if (q.y === y && q.m === m && q.d === d && q.h === 0 && q.min === 0) return guess + shift;
  }
  return guess;
}
/** The site midnight of an ISO date ("2026-11-01"), in seconds; null if it is none. */
export function midnightOf(iso) {
  const m = ISO_DAY.exec(iso || "");
  return m && m[3] ? siteMidnight(+m[1], +m[2], +m[3]) : null;
}
/** The ISO date a number of days after another (calendar arithmetic, no zone). */
export function addDays(iso, days) {
  const m = ISO_DAY.exec(iso || "");
  if (!m || !m[3]) return null;
  return new Date(Date.UTC(+m[1], +m[2] - 1, +m[3] + days)).toISOString().slice(0, 10);
}

export const parseTime = (iso) => {
  const ms = typeof iso === "string" ? Date.parse(iso) : NaN;
  return Number.isFinite(ms) ? ms : null;
};
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
export function fmtAge(ms) {
  const min = Math.round((ms - Date.now()) / 60000);
  return Math.abs(min) < 90 ? relative.format(min, "minute") : relative.format(Math.round(min / 60), "hour");
}

// ---------------------------------------------------------------- writing figures
/** Show a formatted number and keep the raw one in data-value for tests. */
export function setNumber(el, value, fmt) {
  el.textContent = fmt(value);
  if (isNum(value)) el.dataset.value = String(value);
  else delete el.dataset.value;
}
/** A measured figure with, only when there is one, the estimate beside it ("+ est. 3.10"),
 *  apart: data-value keeps the measured figure, the note's own data-value the estimate. */
export function setMeasured(el, measured, estimated, fmt) {
  setNumber(el, measured, fmt);
  if (isNum(estimated) && estimated !== 0) {
    const note = make("span", "estimate-note", `+ est. ${fmt(estimated)}`);
    note.dataset.value = String(estimated);
    note.title = "estimated from the meters' registers across gaps in the data";
    el.append(note);
  }
}
/** Show a decimal string formatted, and keep the string in data-value. */
export function setDecimal(el, s, fmt = fmtDecimal) {
  el.textContent = fmt(s);
  if (isDecimal(s)) el.dataset.value = s;
  else delete el.dataset.value;
}
export function setTime(el, iso, fmt = dateTime) {
  const ms = parseTime(iso);
  el.textContent = ms === null ? "none yet" : fmt.format(ms);
  if (el instanceof HTMLTimeElement) {
    if (ms === null) el.removeAttribute("datetime"); else el.dateTime = iso;
  }
  return ms;
}

/** Update table rows in place, keyed, so a refresh never rebuilds them. `empty`: the note
 *  shown when there are no rows (by default its section's .empty; null: none). */
export function syncRows(table, items, keyOf, build, update, empty = table.closest("section").querySelector(".empty")) {
  const tbody = table.tBodies[0];
  const existing = new Map([...tbody.rows].map((tr) => [tr.dataset.key, tr]));
  items.forEach((item, i) => {
    const key = String(keyOf(item));
    let tr = existing.get(key);
    if (tr) existing.delete(key);
    else { tr = build(key); tr.dataset.key = key; }
    update(tr, item);
    if (tbody.rows[i] !== tr) tbody.insertBefore(tr, tbody.rows[i] || null);
  });
  existing.forEach((tr) => tr.remove());
  if (empty) empty.hidden = items.length > 0;
}
