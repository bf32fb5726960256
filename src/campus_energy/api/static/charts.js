/* The dashboard's uPlot charts: axes on the site's clock with labels that never crowd or
 * get cut, y axes from zero on round steps, and a "slot" per chart that creates its uPlot
 * once, follows its container's width and says so when there is nothing to draw. */

import {
  clock, dateTime, fmtDecimal, fmtKW, fmtKWh, isDecimal, isNum, kW, kWh, parseTime, setZone, site, siteDay,
  siteMidnight, siteParts,
} from "./format.js";

const NO_DATA_LABEL = "No data yet.";
const COLOR = { line: "#1f5fbf", fill: "rgba(31, 95, 191, 0.16)", bar: "#2f6fcf",
  axis: "#1a1f29", grid: "#dfe3e9", generation: "#2e7d32", net: "#1a1f29" };
// Canvas text does not follow CSS: scale it with the root font size (larger on lobby screens).
const axisPx = () => Math.round(0.8125 * (Number.parseFloat(getComputedStyle(document.documentElement).fontSize) || 16));
const axisStyle = () => {
  const px = axisPx();
  return { stroke: COLOR.axis, grid: { stroke: COLOR.grid, width: 1 }, ticks: { stroke: COLOR.grid, width: 1 },
    font: `${px}px system-ui, sans-serif`, labelFont: `bold ${px}px system-ui, sans-serif`,
    labelSize: px + 10, labelGap: 2 }; // the axis title: a line of text, no more
};
const yFromZero = (u, min, max) => {
  if (!isNum(max) || max <= 0) return [0, 1];
  const step = niceStep(max / 4);
  return [0, Math.ceil((max * 1.05) / step) * step];
};
/** From zero as `yFromZero`, or, when a value is below zero (a campus feeding the grid: power
 *  at noon, a day's generation drawn down), from a round step below it: nothing is clipped. */
const ySigned = (u, min, max) => {
  if (!isNum(min) || min >= 0) return yFromZero(u, min, max);
  const step = niceStep(Math.max(-min, isNum(max) ? max : 0) / 4);
  const top = isNum(max) && max > 0 ? Math.ceil((max * 1.05) / step) * step : 0;
  return [Math.floor((min * 1.05) / step) * step, top];
};
/** 1, 2 or 5 × a power of ten: round ticks for any magnitude. */
function niceStep(raw) {
  const power = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((k) => k * power).find((k) => k >= raw) || 10 * power;
}
const NICE = [];
for (let e = -3; e <= 9; e++) for (const k of [1, 2, 5]) NICE.push(k * 10 ** e);
/** Value labels with as many decimals as the tick step needs (0.25 is never shown as 0.3). */
const valueLabels = (u, splits, axisIdx, space, incr) => {
  const decimals = Math.max(0, -Math.floor(Math.log10(incr || 1) + 1e-9));
  const f = new Intl.NumberFormat(undefined, { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
  return splits.map((v) => f.format(v));
};
/** The y axis as wide as its widest label needs, and no wider (more room for the plot). */
const yAxisSize = (u, values, axisIdx, cycleNum) => {
  const axis = u.axes[axisIdx];
  if (cycleNum > 1) return axis._size;
  u.ctx.font = axis.font[0];
  const widest = Math.max(0, ...(values || []).filter((v) => v != null)
    .map((v) => u.ctx.measureText(String(v)).width / devicePixelRatio));
  return Math.ceil(axis.ticks.size + axis.gap + widest + 3);
};
const RIGHT_PAD = () => 2 * axisPx() + 2; // room for a label on a power chart's "now" end
const LABEL_GAP = 8; // at least this much space between neighbouring x labels
/** Each label's width at the x axis font, in CSS pixels. */
function labelWidths(u, labels) {
  u.ctx.font = u.axes[0].font[0];
  return labels.map((t) => u.ctx.measureText(t).width / devicePixelRatio);
}
/** The first of the candidate tick sets (densest first) whose labels do not crowd each
 *  other, keeping only ticks whose label lies wholly inside the canvas. */
function fitTicks(u, min, max, candidates, labelsOf) {
  const width = u.bbox.width / devicePixelRatio;
  const right = u.width - u.bbox.left / devicePixelRatio - 2; // the canvas's right edge
  const xOf = (t) => ((t - min) / (max - min)) * width;
  let fitted = [];
  for (const splits of candidates) {
    const widths = labelWidths(u, labelsOf(u, splits));
    fitted = splits.filter((t, i) => xOf(t) >= widths[i] / 2 - 4 && xOf(t) + widths[i] / 2 <= right);
    const ok = splits.every((t, i) => i === 0
      || xOf(t) - xOf(splits[i - 1]) >= (widths[i] + widths[i - 1]) / 2 + LABEL_GAP);
    if (ok) break;
  }
  return fitted;
}

/** Ticks on the site's whole clock hours, every 1, 2, 3, 4, 6 or 12 hours as the width
 *  allows, none so close to an edge that its label would be cut. */
function hourSplits(u, axisIdx, min, max) {
  const hours = [];
  for (let t = Math.ceil(min / 900) * 900; t <= max; t += 900) {
    const p = siteParts(t * 1000);
    if (p.min === 0) hours.push([t, p.h]);
  }
  const candidates = [1, 2, 3, 4, 6, 12, 24]
    .map((every) => hours.filter(([, h]) => h % every === 0).map(([t]) => t));
  return fitTicks(u, min, max, candidates, hourLabels);
}
function hourLabels(u, splits) {
  return splits.map((t) => {
    const p = siteParts(t * 1000);
    return p.h === 0 ? siteDay.format(Date.UTC(p.y, p.m - 1, p.d)) : clock.format(t * 1000);
  });
}

/** One tick a day, or every 2 or 7 days as the width allows, counted back from the latest
 *  day so that today is always named; each day labelled once at most. */
function daySplits(u, axisIdx, min, max) {
  const last = Math.floor(max / 86400) * 86400;
  const candidates = [1, 2, 7, 14].map((every) => {
    const found = [];
    for (let t = last; t >= min; t -= every * 86400) found.unshift(t);
    return found;
  });
  return fitTicks(u, min, max, candidates, dayLabels);
}
function dayLabels(u, splits) {
  return splits.map((t) => siteDay.format(t * 1000));
}

export function powerOptions(seriesLabel, range) {
  return {
    cursor: { drag: { x: false, y: false } },
    padding: [12, RIGHT_PAD(), 0, 0],
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), site.zone),
    // net power: below zero while feeding the grid, filled from zero either way
    scales: { x: { time: true, range: () => range() }, y: { range: ySigned } },
    axes: [
      { ...axisStyle(), label: `Time (${site.zone}, 24-hour)`, splits: hourSplits, values: hourLabels },
      { ...axisStyle(), label: "Power (kW)", size: yAxisSize, incrs: NICE, values: valueLabels },
    ],
    series: [
      { label: "Time", value: (u, v) => (v == null ? "—" : dateTime.format(v * 1000)) },
      { label: seriesLabel, stroke: COLOR.line, fill: COLOR.fill, fillTo: 0, width: 2, spanGaps: false,
        points: { show: false }, value: (u, v) => (v == null ? "—" : `${fmtKW(v)} kW`) },
    ],
  };
}
/** Energy per day: consumption as bars; where the campus generated (`columns` 4: dailyColumns'),
 *  its generation as bars below zero and the net as a dot per day. */
export function dailyOptions(range, columns = 2) {
  const flows = columns === 4;
  const kwhValue = (u, v) => (v == null ? "—" : `${fmtKWh(v)} kWh`);
  return {
    cursor: { drag: { x: false, y: false } },
    padding: [12, 2 * axisPx(), 0, 0], // today's label ("30 May"), half a day from the edge, fits
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
    scales: { x: { time: true, range: () => range() }, y: { range: ySigned } },
    axes: [
      { ...axisStyle(), label: `Day (${site.zone})`, splits: daySplits, values: dayLabels },
      { ...axisStyle(), label: "Energy (kWh)", size: yAxisSize, incrs: NICE, values: valueLabels },
    ],
    series: [
      { label: "Day", value: (u, v) => (v == null ? "—" : siteDay.format(v * 1000)) },
      { label: flows ? "Consumption" : "Energy per day", stroke: COLOR.bar, fill: COLOR.bar, width: 1,
        paths: uPlot.paths.bars({ size: [0.7, 48], align: 0 }), points: { show: false }, value: kwhValue },
      ...(flows ? [
        { label: "Generation", stroke: COLOR.generation, fill: COLOR.generation, width: 1, fillTo: 0,
          paths: uPlot.paths.bars({ size: [0.7, 48], align: 0 }), points: { show: false },
          value: (u, v) => (v == null ? "—" : `${fmtKWh(-v)} kWh`) },
        { label: "Net", stroke: COLOR.net, width: 0, paths: () => null,
          points: { show: true, size: 7, width: 1.5, stroke: "#ffffff", fill: COLOR.net }, value: kwhValue },
      ] : []),
    ],
  };
}

function chartSize(el) {
  const width = Math.floor(el.clientWidth);
  return { width, height: Math.round(Math.min(420, Math.max(220, width * 0.42))) };
}

/** A chart slot: lazily creates its uPlot, follows its container's width,
 *  and swaps to the "no data" note when there is nothing to plot. update()
 *  takes a /api/series response; an unchanged one (same ETag) is not redrawn. */
export function chartSlot(container, options, toColumns, rangeOf, describe) {
  const note = container.parentElement.querySelector(".chart-empty");
  const noDataText = note.textContent;
  const slot = { u: null, data: null, source: null, range: [0, 1], zone: null };
  new ResizeObserver(() => {
    if (!slot.u || container.clientWidth === 0) return;
    const size = chartSize(container);
    if (size.width !== slot.u.width || size.height !== slot.u.height) slot.u.setSize(size);
  }).observe(container);
  slot.update = (source) => {
    if (source === slot.source && slot.data) return slot.data;
    if (source) setZone(source.timezone);
    const data = toColumns(source && source.points, source);
    slot.range = rangeOf(source, data);
    const empty = data[0].length === 0;
    slot.source = source;
    slot.data = empty ? null : data;
    container.hidden = empty;
    note.hidden = !empty;
    note.textContent = noDataText;
    container.setAttribute("aria-label", empty ? NO_DATA_LABEL : describe(data, source));
    if (empty || typeof uPlot === "undefined") return data;
    // another zone, or other columns (a campus that began to generate): a chart made afresh
    if (slot.u && (slot.zone !== site.zone || slot.columns !== data.length)) { slot.u.destroy(); slot.u = null; }
    if (slot.u) slot.u.setData(data);
    else {
      slot.u = new uPlot({ ...chartSize(container), ...options(() => slot.range, data.length) }, data, container);
      slot.zone = site.zone;
      slot.columns = data.length;
    }
    return data;
  };
  slot.clear = () => { slot.data = null; slot.source = null; container.hidden = true; note.hidden = true; };
  /** A failed fetch keeps a drawn chart; with nothing drawn yet, say so instead of a blank box. */
  slot.fail = () => {
    if (slot.data) return;
    container.hidden = true;
    note.hidden = false;
    note.textContent = "Not available right now — the dashboard retries automatically.";
  };
  return slot;
}

/** [ms, value] rows -> uPlot columns; steps without data become null so lines break there. */
function stepColumns(rows, stepS) {
  const sorted = rows.filter(([ms]) => ms !== null).sort((a, b) => a[0] - b[0]);
  const xs = [], ys = [];
  let prev = null;
  for (const [ms, v] of sorted) {
    const t = ms / 1000;
    if (prev !== null && t - prev > stepS * 1.5) { xs.push(prev + stepS); ys.push(null); }
    xs.push(t); ys.push(v); prev = t;
  }
  return [xs, ys];
}
/** /api/series points -> power in kW per step. */
function powerColumns(points, stepS) {
  return stepColumns((Array.isArray(points) ? points : [])
    .map((p) => [parseTime(p && p.t), kW(p && p.avg_power_w)]), stepS);
}
/** /api/series daily points -> [days, consumption kWh]; where any day generated, also
 *  [generation as kWh below zero, net kWh]. */
export function dailyColumns(points) {
  const kwhOf = (p, key) => (p && isNum(p[key]) ? kWh(p[key]) : null);
  const rows = (Array.isArray(points) ? points : []).map((p) => {
    const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec((p && p.date) || "");
    const ms = m ? Date.UTC(+m[1], +m[2] - 1, +m[3]) : parseTime(p && p.t);
    const exported = kwhOf(p, "export_wh");
    return [ms, kwhOf(p, "energy_wh"), exported ? -exported : null, kwhOf(p, "net_wh")];
  }).filter(([ms]) => ms !== null).sort((a, b) => a[0] - b[0]);
  const columns = [rows.map((r) => r[0] / 1000), rows.map((r) => r[1])];
  if (rows.some((r) => r[2] !== null)) columns.push(rows.map((r) => r[2]), rows.map((r) => r[3]));
  return columns;
}
export function peakOf([xs, ys]) {
  let i = -1;
  ys.forEach((v, j) => { if (isNum(v) && (i < 0 || v > ys[i])) i = j; });
  return i < 0 ? null : { t: xs[i], v: ys[i] };
}
const lastOf = ([xs, ys]) => {
  for (let i = ys.length - 1; i >= 0; i--) if (isNum(ys[i])) return { t: xs[i], v: ys[i] };
  return null;
};
export function describePower(what) {
  return (data) => {
    const last = lastOf(data), peak = peakOf(data);
    const low = Math.min(...data[1].filter(isNum));
    return `${what}, last 24 hours in 5-minute steps, in kW. ` +
      (last ? `Latest ${fmtKW(last.v)} kW at ${dateTime.format(last.t * 1000)}; ` : "") +
      (peak ? `peak ${fmtKW(peak.v)} kW at ${dateTime.format(peak.t * 1000)}; lowest ${fmtKW(low)} kW.` : "");
  };
}
export function describeDaily(data) {
  const sum = (column) => column.filter(isNum).reduce((a, b) => a + b, 0);
  const total = sum(data[1]);
  const peak = peakOf(data), last = lastOf(data);
  return `Campus ${data.length > 2 ? "consumption" : "energy"} per day for the last 30 days, in kWh: ` +
    `${data[0].length} days with data, ${fmtKWh(total)} kWh in all` +
    (peak ? `; highest ${fmtKWh(peak.v)} kWh on ${siteDay.format(peak.t * 1000)}` : "") +
    (last ? `; latest ${fmtKWh(last.v)} kWh on ${siteDay.format(last.t * 1000)}` : "") +
    (data.length > 2 ? `; generation ${fmtKWh(-sum(data[2]))} kWh in all, drawn below zero, ` +
      `and the net of each day as a dot.` : ".");
}

export const fiveMinutes = (points) => powerColumns(points, 300);
/** The range asked for, so a chart spans its whole day or month from the first hour of data. */
export function askedRange(source, [xs]) {
  const start = parseTime(source && source.start), end = parseTime(source && source.end);
  if (start !== null && end !== null && end > start) return [start / 1000, end / 1000];
  return xs.length ? [xs[0], xs[xs.length - 1] + 300] : [0, 1];
}
/** The 30 site days that end with the day of the answer's end, as UTC midnights ± half a day. */
export function monthRange(source, [xs]) {
  const end = parseTime(source && source.end);
  let last = xs.length ? xs[xs.length - 1] : null;
  if (end !== null) {
    const p = siteParts(end - 1);
    last = Math.max(last ?? 0, Date.UTC(p.y, p.m - 1, p.d) / 1000);
  }
  if (last === null) return [0, 86400];
  return [last - 29 * 86400 - 43200, last + 43200];
}

// ---------------------------------------------------------------- a month of demand
const DEMAND_COLOR = { peak: "#b0231b", floor: "#8a4b00" };

/** The site midnights (s) in [min, max], each found from the wall clock of an instant of its
 *  day (days of 23 or 25 hours included). */
function midnightsIn(min, max) {
  const found = [];
  let t = Math.floor(min / 60) * 60;
  for (let guard = 0; t <= max && guard < 400; guard++) {
    const p = siteParts(t * 1000);
    const midnight = siteMidnight(p.y, p.m, p.d);
    if (midnight >= min && midnight <= max && found[found.length - 1] !== midnight) found.push(midnight);
    t = midnight + 26 * 3600; // into the next day, however long this one is
  }
  return found;
}
/** A tick at each site midnight, or every 2, 7 or 14 days as the width allows (counted from
 *  the month's first); over two days or less, on the hours. */
function monthSplits(u, axisIdx, min, max) {
  if (max - min <= 2 * 86400) return hourSplits(u, axisIdx, min, max);
  const days = midnightsIn(min, max);
  const candidates = [1, 2, 7, 14].map((every) => days.filter((_, i) => i % every === 0));
  return fitTicks(u, min, max, candidates, hourLabels);
}

const kwValue = (u, v) => (v == null ? "—" : `${fmtKW(v)} kW`);
/** A month of demand: net, so a building whose solar outweighs its load goes below zero. */
export function demandOptions(range) {
  return {
    cursor: { drag: { x: false, y: false } },
    padding: [12, RIGHT_PAD(), 0, 0],
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), site.zone),
    scales: { x: { time: true, range: () => range() }, y: { range: ySigned } },
    axes: [
      { ...axisStyle(), label: `Day (${site.zone})`, splits: monthSplits, values: hourLabels },
      { ...axisStyle(), label: "Demand (kW)", size: yAxisSize, incrs: NICE, values: valueLabels },
    ],
    series: [
      { label: "Interval from", value: (u, v) => (v == null ? "—" : dateTime.format(v * 1000)) },
      { label: "Demand", stroke: COLOR.line, fill: COLOR.fill, width: 1.5, spanGaps: false,
        points: { show: false }, value: kwValue },
      // a ring around the peak's point: the line shows through it
      { label: "Peak", stroke: DEMAND_COLOR.peak, width: 0, paths: () => null,
        points: { show: true, size: 16, width: 2.5, stroke: DEMAND_COLOR.peak, fill: "rgba(176, 35, 27, 0.12)" },
        value: kwValue },
      { label: "Billed at least", stroke: DEMAND_COLOR.floor, width: 2, dash: [8, 5], spanGaps: true,
        points: { show: false }, value: kwValue },
    ],
  };
}

/** The month's peak in a /api/demand answer (its last month's), or null. */
function monthPeak(source) {
  const peaks = (source && Array.isArray(source.monthly_peaks) ? source.monthly_peaks : [])
    .filter((p) => p && isDecimal(p.kw) && parseTime(p.start) !== null);
  return peaks.length ? peaks[peaks.length - 1] : null;
}
/** The ratchet floor of the answer's last month, as a decimal string, or null. */
export function monthFloor(source) {
  const floors = Object.entries((source && source.ratchet_floors) || {}).sort();
  const last = floors.length ? floors[floors.length - 1][1] : null;
  return isDecimal(last) ? last : null;
}
/** /api/demand -> [interval starts, kW, the peak (at its interval only), the ratchet floor]. */
export function demandColumns(points, source) {
  const stepS = (isNum(source && source.interval_min) ? source.interval_min : 15) * 60;
  const [xs, ys] = stepColumns((Array.isArray(points) ? points : [])
    .map((p) => [parseTime(p && p.start), p && isNum(p.kw) ? p.kw : null]), stepS);
  const peak = monthPeak(source);
  const at = peak ? parseTime(peak.start) / 1000 : null;
  const floor = monthFloor(source);
  return [xs, ys, xs.map((x) => (x === at ? Number(peak.kw) : null)), xs.map(() => (floor === null ? null : Number(floor)))];
}
export function describeDemand(what) {
  return (data, source) => {
    const peak = monthPeak(source), floor = monthFloor(source);
    const minutes = source && source.interval_min;
    return `${what}: demand (the mean power of each ${minutes}-minute interval) this month, in kW. ` +
      (peak ? `Peak ${fmtDecimal(peak.kw)} kW at ${dateTime.format(parseTime(peak.start))}. ` : "") +
      (floor ? `Billed at least ${fmtDecimal(floor)} kW (the ratchet floor or the tariff's minimum).` : "");
  };
}
