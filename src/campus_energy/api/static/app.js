/* Campus Energy public dashboard. Plain ES2020, no build step, no framework.
 * Talks only to the same-origin JSON API described in docs/api.md and updates
 * the page in place every data-refresh-s seconds (read from <main id="app">). */
(() => {
  "use strict";

  const $ = (sel, root = document) => root.querySelector(sel);
  const app = $("#app");
  const REFRESH_S = (() => {
    const n = Number.parseInt(app.dataset.refreshS, 10);
    return Number.isFinite(n) && n >= 5 ? n : 60;
  })();
  const STATUSES = ["ok", "degraded", "unavailable"];

  // ---------------------------------------------------------------- formatting
  // Every time on the page is the site's clock (the API names its zone), 24-hour, whatever
  // the browser's zone: days, "today" and the charts are all counted at the site.
  const fixed = [0, 1, 2, 3].map((d) => new Intl.NumberFormat(undefined,
    { minimumFractionDigits: d, maximumFractionDigits: d }));
  const nf0 = fixed[0];
  const pct = new Intl.NumberFormat(undefined, { style: "percent", minimumFractionDigits: 1, maximumFractionDigits: 1 });
  const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  const site = { zone: "UTC", formats: new Map() };
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
    day: { day: "numeric", month: "short" },
  };
  const fmtTime = (name) => ({ format: (ms) => siteFormat(name, FORMATS[name]).format(ms) });
  const dateTime = fmtTime("dateTime");
  const clock = fmtTime("clock");
  // Daily points are site days, carried as UTC midnights: labelled in UTC they read as at the site.
  const dayFormat = new Intl.DateTimeFormat("en-GB", { day: "numeric", month: "short", timeZone: "UTC" });
  const siteDay = { format: (ms) => dayFormat.format(ms) };
  function setZone(zone) {
    if (typeof zone !== "string" || !zone || zone === site.zone) return;
    try { new Intl.DateTimeFormat("en-GB", { timeZone: zone }); } catch (_) { return; }
    site.zone = zone;
  }
  /** {y, m, d, h, min} of an instant on the site's clock. */
  function siteParts(ms) {
    const parts = {};
    for (const p of siteFormat("parts", { year: "numeric", month: "numeric", day: "numeric",
      hour: "numeric", minute: "numeric" }).formatToParts(ms)) parts[p.type] = Number(p.value);
    return { y: parts.year, m: parts.month, d: parts.day, h: parts.hour % 24, min: parts.minute };
  }

  const isNum = (v) => typeof v === "number" && Number.isFinite(v);
  /** A value kept to `decimals` places: sums and unit changes add no float noise. */
  const toPlaces = (v, decimals) => Number(v.toFixed(decimals));
  // The API gives power to the mW and energy to the µWh: kW to 6 places, kWh to 9.
  const kW = (w) => (isNum(w) ? toPlaces(w / 1000, 6) : null);
  const kWh = (wh) => (isNum(wh) ? toPlaces(wh / 1000, 9) : null);
  // Shown to about three significant figures, never fewer than one decimal:
  // 0.78 kW, 3.40 kW, 46.2 kW; 0.512 kWh, 43.05 kWh, 21,160.4 kWh.
  const fmtKW = (v) => (isNum(v) ? fixed[Math.abs(v) < 10 ? 2 : 1].format(v) : "—");
  const fmtKWh = (v) => (isNum(v) ? fixed[Math.abs(v) < 10 ? 3 : Math.abs(v) < 100 ? 2 : 1].format(v) : "—");
  const fmtPct = (v) => (isNum(v) ? pct.format(v) : "—");
  const parseTime = (iso) => {
    const ms = typeof iso === "string" ? Date.parse(iso) : NaN;
    return Number.isFinite(ms) ? ms : null;
  };
  function fmtAge(ms) {
    const min = Math.round((ms - Date.now()) / 60000);
    return Math.abs(min) < 90 ? relative.format(min, "minute") : relative.format(Math.round(min / 60), "hour");
  }

  /** Show a formatted number and keep the raw one in data-value for tests. */
  function setNumber(el, value, fmt) {
    el.textContent = fmt(value);
    if (isNum(value)) el.dataset.value = String(value);
    else delete el.dataset.value;
  }
  function setTime(el, iso, fmt = dateTime) {
    const ms = parseTime(iso);
    el.textContent = ms === null ? "none yet" : fmt.format(ms);
    if (el instanceof HTMLTimeElement) {
      if (ms === null) el.removeAttribute("datetime"); else el.dateTime = iso;
    }
    return ms;
  }
  function make(tag, className, text) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text !== undefined) el.textContent = text;
    return el;
  }

  // ---------------------------------------------------------------- fetching
  class HttpError extends Error {
    constructor(status, body) { super(`HTTP ${status}`); this.status = status; this.body = body; }
  }
  const etags = new Map(); // path -> {etag, data}: unchanged data keeps its identity
  async function getJSON(path) {
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

  // ---------------------------------------------------------------- charts
  const NO_DATA_LABEL = "No data yet.";
  const COLOR = { line: "#1f5fbf", fill: "rgba(31, 95, 191, 0.16)", bar: "#2f6fcf",
    axis: "#1a1f29", grid: "#dfe3e9" };
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

  function powerOptions(seriesLabel, range) {
    return {
      cursor: { drag: { x: false, y: false } },
      padding: [12, RIGHT_PAD(), 0, 0],
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), site.zone),
      scales: { x: { time: true, range: () => range() }, y: { range: yFromZero } },
      axes: [
        { ...axisStyle(), label: `Time (${site.zone}, 24-hour)`, splits: hourSplits, values: hourLabels },
        { ...axisStyle(), label: "Power (kW)", size: yAxisSize, incrs: NICE, values: valueLabels },
      ],
      series: [
        { label: "Time", value: (u, v) => (v == null ? "—" : dateTime.format(v * 1000)) },
        { label: seriesLabel, stroke: COLOR.line, fill: COLOR.fill, width: 2, spanGaps: false,
          points: { show: false }, value: (u, v) => (v == null ? "—" : `${fmtKW(v)} kW`) },
      ],
    };
  }
  function dailyOptions(range) {
    return {
      cursor: { drag: { x: false, y: false } },
      padding: [12, 2 * axisPx(), 0, 0], // today's label ("30 May"), half a day from the edge, fits
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
      scales: { x: { time: true, range: () => range() }, y: { range: yFromZero } },
      axes: [
        { ...axisStyle(), label: `Day (${site.zone})`, splits: daySplits, values: dayLabels },
        { ...axisStyle(), label: "Energy (kWh)", size: yAxisSize, incrs: NICE, values: valueLabels },
      ],
      series: [
        { label: "Day", value: (u, v) => (v == null ? "—" : siteDay.format(v * 1000)) },
        { label: "Energy per day", stroke: COLOR.bar, fill: COLOR.bar, width: 1,
          paths: uPlot.paths.bars({ size: [0.7, 48], align: 0 }), points: { show: false },
          value: (u, v) => (v == null ? "—" : `${fmtKWh(v)} kWh`) },
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
  function chartSlot(container, options, toColumns, rangeOf, describe) {
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
      const data = toColumns(source && source.points);
      slot.range = rangeOf(source, data);
      const empty = data[0].length === 0;
      slot.source = source;
      slot.data = empty ? null : data;
      container.hidden = empty;
      note.hidden = !empty;
      note.textContent = noDataText;
      container.setAttribute("aria-label", empty ? NO_DATA_LABEL : describe(data));
      if (empty || typeof uPlot === "undefined") return data;
      if (slot.u && slot.zone !== site.zone) { slot.u.destroy(); slot.u = null; }
      if (slot.u) slot.u.setData(data);
      else {
        slot.u = new uPlot({ ...chartSize(container), ...options(() => slot.range) }, data, container);
        slot.zone = site.zone;
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

  /** Points -> uPlot columns; steps without data become null so lines break there. */
  function powerColumns(points, stepS) {
    const rows = (Array.isArray(points) ? points : [])
      .map((p) => [parseTime(p && p.t), p && p.avg_power_w])
      .filter(([ms]) => ms !== null)
      .sort((a, b) => a[0] - b[0]);
    const xs = [], ys = [];
    let prev = null;
    for (const [ms, w] of rows) {
      const t = ms / 1000;
      if (prev !== null && t - prev > stepS * 1.5) { xs.push(prev + stepS); ys.push(null); }
      xs.push(t); ys.push(kW(w)); prev = t;
    }
    return [xs, ys];
  }
  function dailyColumns(points) {
    const rows = (Array.isArray(points) ? points : []).map((p) => {
      const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec((p && p.date) || "");
      const ms = m ? Date.UTC(+m[1], +m[2] - 1, +m[3]) : parseTime(p && p.t);
      return [ms, p && isNum(p.energy_wh) ? kWh(p.energy_wh) : null];
    }).filter(([ms]) => ms !== null).sort((a, b) => a[0] - b[0]);
    return [rows.map((r) => r[0] / 1000), rows.map((r) => r[1])];
  }
  function peakOf([xs, ys]) {
    let i = -1;
    ys.forEach((v, j) => { if (isNum(v) && (i < 0 || v > ys[i])) i = j; });
    return i < 0 ? null : { t: xs[i], v: ys[i] };
  }
  const lastOf = ([xs, ys]) => {
    for (let i = ys.length - 1; i >= 0; i--) if (isNum(ys[i])) return { t: xs[i], v: ys[i] };
    return null;
  };
  function describePower(what) {
    return (data) => {
      const last = lastOf(data), peak = peakOf(data);
      const low = Math.min(...data[1].filter(isNum));
      return `${what}, last 24 hours in 5-minute steps, in kW. ` +
        (last ? `Latest ${fmtKW(last.v)} kW at ${dateTime.format(last.t * 1000)}; ` : "") +
        (peak ? `peak ${fmtKW(peak.v)} kW at ${dateTime.format(peak.t * 1000)}; lowest ${fmtKW(low)} kW.` : "");
    };
  }
  function describeDaily(data) {
    const total = data[1].filter(isNum).reduce((a, b) => a + b, 0);
    const peak = peakOf(data), last = lastOf(data);
    return `Campus energy per day for the last 30 days, in kWh: ${data[0].length} days with data, ` +
      `${fmtKWh(total)} kWh in all` +
      (peak ? `; highest ${fmtKWh(peak.v)} kWh on ${siteDay.format(peak.t * 1000)}` : "") +
      (last ? `; latest ${fmtKWh(last.v)} kWh on ${siteDay.format(last.t * 1000)}.` : ".");
  }

  const fiveMinutes = (points) => powerColumns(points, 300);
  /** The range asked for, so a chart spans its whole day or month from the first hour of data. */
  function askedRange(source, [xs]) {
    const start = parseTime(source && source.start), end = parseTime(source && source.end);
    if (start !== null && end !== null && end > start) return [start / 1000, end / 1000];
    return xs.length ? [xs[0], xs[xs.length - 1] + 300] : [0, 1];
  }
  /** The 30 site days that end with the day of the answer's end, as UTC midnights ± half a day. */
  function monthRange(source, [xs]) {
    const end = parseTime(source && source.end);
    let last = xs.length ? xs[xs.length - 1] : null;
    if (end !== null) {
      const p = siteParts(end - 1);
      last = Math.max(last ?? 0, Date.UTC(p.y, p.m - 1, p.d) / 1000);
    }
    if (last === null) return [0, 86400];
    return [last - 29 * 86400 - 43200, last + 43200];
  }
  const chart24h = chartSlot($("#chart-24h"), (range) => powerOptions("Campus power", range), fiveMinutes,
    askedRange, describePower("Campus average power"));
  const chart30d = chartSlot($("#chart-30d"), dailyOptions, dailyColumns, monthRange, describeDaily);
  const chartMeter = chartSlot($("#chart-meter"), (range) => powerOptions("Meter power", range), fiveMinutes,
    askedRange, describePower("Meter average power"));
  // What each chart drew, for people who script the page (and for its tests).
  window.campusCharts = { power24h: chart24h, daily30d: chart30d, meter: chartMeter };

  // ---------------------------------------------------------------- tables
  /** Update table rows in place, keyed, so a refresh never rebuilds them. */
  function syncRows(table, items, keyOf, build, update) {
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
    table.closest("section").querySelector(".empty").hidden = items.length > 0;
  }

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
    tr.append(name, make("td", "num"), make("td", "num"), cell);
    return tr;
  }
  function updateBuildingRow(tr, b) {
    setNumber(tr.cells[1], kW(b.power_w), fmtKW);
    setNumber(tr.cells[2], b.today_kwh, fmtKWh);
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
  const state = { health: null, summary: null, meters: null };

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

  function renderSummary(s) {
    setNumber($("#power-now"), kW(s.power_w), fmtKW);
    setNumber($("#today-kwh"), s.today_kwh, fmtKWh);
    setNumber($("#week-kwh"), s.week_kwh, fmtKWh);
    setNumber($("#month-kwh"), s.month_kwh, fmtKWh);
    const buildings = (Array.isArray(s.buildings) ? s.buildings : []).filter((b) => b && b.building != null)
      .sort((a, b) => String(a.building).localeCompare(String(b.building)));
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
    const wh = points.map((p) => p && p.energy_wh).filter(isNum);
    setNumber($("#detail-kwh"), wh.length ? kWh(wh.reduce((a, b) => a + b, 0)) : null, fmtKWh);
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

  const jobs = [ // [path, apply the JSON, on failure]
    ["api/health", (h) => { state.health = h; }, () => {}],
    ["api/summary", (s) => { state.summary = s; renderSummary(s); }, () => {}],
    ["api/meters", (m) => { state.meters = m; renderMeters(m); }, () => {}],
    ["api/series?step=5m", (s) => chart24h.update(s), () => chart24h.fail()],
    ["api/series?step=1d", (s) => chart30d.update(s), () => chart30d.fail()],
  ];

  async function refresh() {
    const results = await Promise.allSettled(jobs.map(([path]) => getJSON(path)));
    // the site's zone first: every time drawn below is on its clock
    results.forEach((r) => { if (r.status === "fulfilled" && r.value) setZone(r.value.timezone); });
    let failure = null;
    results.forEach((r, i) => {
      const [path, apply, onFail] = jobs[i];
      if (r.status === "fulfilled" && r.value && typeof r.value === "object") {
        try { apply(r.value); } catch (e) { failure = "the page could not show new data"; console.error(`rendering ${path}`, e); }
        return;
      }
      onFail();
      const http = r.status === "rejected" && r.reason instanceof HttpError;
      failure = http && r.reason.status === 503 ? "the data source is unavailable"
        : http ? `the server answered HTTP ${r.reason.status}` : "the server could not be reached";
      const body = http ? r.reason.body : null;
      // A 503 from /api/health still tells us something: keep the last facts, show the status.
      if (path === "api/health" && body && body.status === "unavailable") {
        state.health = { ...(state.health || {}), ...body };
      } else if (path === "api/health" && !(r.reason instanceof HttpError) && state.health === null) {
        state.health = { status: "unavailable" };
      }
    });
    renderHeader();
    renderStale(failure);
    if (detail.id !== null) await loadDetail();
  }

  let timer = null;
  let running = false;
  async function tick() {
    if (running) return;
    running = true;
    clearTimeout(timer);
    try { if (!document.hidden) await refresh(); } finally {
      running = false;
      timer = setTimeout(tick, REFRESH_S * 1000);
    }
  }
  document.addEventListener("visibilitychange", () => { if (!document.hidden) tick(); });
  tick();
})();
