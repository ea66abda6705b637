// ECharts options for every chart kind, with no DOM: the pages (through charts.js) and the
// report renderer (opsmetrics/reports/charts_ssr.py, ECharts in QuickJS) build the same charts.
// Each builder takes the payload and `c`, the colours: {palette: [...], text, muted, border,
// ok, warning, critical}.
import { axisFormatter, formatTime, formatValue } from "./value_format.js";

// Okabe-Ito, in an order that keeps the first lines apart.
export const PALETTE_LIGHT = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442"];
export const PALETTE_DARK = ["#56B4E9", "#E69F00", "#009E73", "#CC79A7", "#0072B2", "#D55E00", "#F0E442", "#FFFFFF"];
const HIDDEN_LEGEND = new Set(["Forecast low", "Forecast band"]);

function base(c) {
  return {
    animation: false,
    color: c.palette,
    textStyle: { color: c.text },
    grid: { left: 8, right: 16, top: 36, bottom: 8, containLabel: true },
    legend: { textStyle: { color: c.text }, type: "scroll", top: 0 },
  };
}

function timeAxis(c) {
  return {
    type: "time",
    axisLabel: { color: c.muted, hideOverlap: true },
    axisLine: { lineStyle: { color: c.border } },
    splitLine: { show: false },
  };
}

function valueAxis(c, unit, opts, bounds) {
  return {
    type: "value", scale: true, min: bounds?.lo, max: bounds?.hi,
    axisLabel: { color: c.muted, formatter: axisFormatter(unit, opts), hideOverlap: true,
      showMinLabel: !bounds, showMaxLabel: !bounds },
    splitLine: { lineStyle: { color: c.border, opacity: 0.6 } },
  };
}

function tooltip(unit, opts) {
  return {
    trigger: "axis",
    valueFormatter: (v) => formatValue(Array.isArray(v) ? v[1] : v, unit, opts),
  };
}

function line(name, points, extra = {}) {
  return { type: "line", name, data: points, showSymbol: false, connectNulls: false, ...extra };
}

function extent(payload) {
  const t0 = payload.thresholds;
  // Without bands or a target line to fit, ECharts' own scale reads best.
  if (t0?.warning == null && t0?.critical == null && payload.target == null) return null;
  const values = [];
  for (const s of payload.series || []) {
    for (const p of s.points || []) if (p[1] != null) values.push(p[1]);
    for (const p of s.compare_points || []) if (p[1] != null) values.push(p[1]);
  }
  for (const p of payload.forecast?.points || []) values.push(p[2], p[3]);
  const t = payload.thresholds;
  for (const v of [payload.target, t?.warning, t?.critical]) if (v != null) values.push(v);
  const finite = values.filter(Number.isFinite);
  if (!finite.length) return null;
  let lo = Math.min(...finite);
  let hi = Math.max(...finite);
  const pad = (hi - lo) * 0.08 || Math.abs(hi) * 0.1 || 1;
  lo = lo >= 0 && lo - pad < 0 ? 0 : lo - pad;
  hi += pad;
  return { lo, hi };
}

/** Warning and critical bands for the value axis, by the KPI's direction. */
function bands(payload, bounds, c) {
  const t = payload.thresholds;
  if (!t || !bounds || (t.warning == null && t.critical == null)) return [];
  const lower = t.direction === "lower_is_better";
  const warn = t.warning;
  const crit = t.critical;
  const area = (from, to, color, name) => [
    { yAxis: from, name, itemStyle: { color, opacity: 0.12 },
      label: { position: "insideTopRight", color: c.muted, fontSize: 10 } }, { yAxis: to },
  ];
  const out = [];
  if (lower) {
    if (warn != null) out.push(area(warn, crit ?? bounds.hi, c.warning, "Warning"));
    if (crit != null) out.push(area(crit, bounds.hi, c.critical, "Critical"));
  } else {
    if (warn != null) out.push(area(crit ?? bounds.lo, warn, c.warning, "Warning"));
    if (crit != null) out.push(area(bounds.lo, crit, c.critical, "Critical"));
  }
  return out;
}

function annotationMarks(annotations, c) {
  const lines = [];
  const areas = [];
  const few = (annotations || []).length <= 3; // more labels would overlap: names on hover
  for (const a of annotations || []) {
    const label = { show: few, formatter: a.title || a.kind || "", color: c.muted, fontSize: 10,
      position: "insideStartTop" };
    if (a.end_ts && a.end_ts > a.ts) {
      areas.push([{ xAxis: a.ts, name: a.title, label: { ...label, position: "insideTop" }, itemStyle: { color: c.muted, opacity: 0.07 } },
        { xAxis: a.end_ts }]);
    } else {
      lines.push({ xAxis: a.ts, name: a.title, label, lineStyle: { color: c.muted, type: "dotted" } });
    }
  }
  return { lines, areas };
}

function forecastSeries(forecast, c) {
  if (!forecast?.points?.length) return [];
  const lower = forecast.points.map((p) => [p[0], p[2]]);
  const width = forecast.points.map((p) => [p[0], p[3] - p[2]]);
  const mean = forecast.points.map((p) => [p[0], p[1]]);
  const stack = { stack: "forecast", lineStyle: { opacity: 0 }, showSymbol: false, tooltip: { show: false } };
  return [
    line("Forecast low", lower, { ...stack }),
    line("Forecast band", width, { ...stack, areaStyle: { color: c.palette[2], opacity: 0.18 } }),
    line("Forecast", mean, { lineStyle: { type: "dashed", color: c.palette[2] }, itemStyle: { color: c.palette[2] } }),
  ];
}

function anomalySeries(anomalies, c) {
  if (!anomalies?.length) return [];
  return [{
    type: "scatter", name: "Anomalies", symbol: "triangle", symbolSize: 11,
    itemStyle: { color: c.critical },
    data: anomalies.map((a) => ({ value: [a.ts, a.value], explanation: a.explanation })),
    tooltip: { trigger: "item", formatter: (p) => `${formatTime(p.value[0])}<br>${p.data.explanation || "Anomaly"}` },
  }];
}

/** The trend_chart payload (also used by the KPI page) as an ECharts option. */
export function trendOption(payload, c, opts = {}) {
  const unit = payload.unit;
  const bounds = extent(payload);
  const series = [];
  (payload.series || []).forEach((s, i) => {
    const color = c.palette[i % c.palette.length];
    series.push(line(s.label || s.name, s.points || [], { itemStyle: { color }, lineStyle: { width: 2, color } }));
    if (s.compare_points) {
      series.push(line(`${s.label || s.name} (previous)`, s.compare_points, {
        itemStyle: { color }, lineStyle: { type: "dashed", width: 1.5, color, opacity: 0.6 },
      }));
    }
  });
  if (!series.length) series.push(line("No data", []));
  const marks = annotationMarks(payload.annotations, c);
  const lines = [...marks.lines];
  if (payload.target != null) {
    lines.push({ yAxis: payload.target, name: "Target",
      label: { formatter: "Target", color: c.text, position: "insideEndTop" }, lineStyle: { color: c.text, type: "dashed" } });
  }
  series[0].markLine = { symbol: "none", data: lines, tooltip: { trigger: "item" },
    emphasis: { label: { show: true } } };
  series[0].markArea = { silent: true, data: [...bands(payload, bounds, c), ...marks.areas] };
  series.push(...forecastSeries(payload.forecast, c), ...anomalySeries(payload.anomalies, c));
  return {
    ...base(c),
    legend: { ...base(c).legend, show: opts.legend !== false,
      data: series.map((x) => x.name).filter((n) => !HIDDEN_LEGEND.has(n)) },
    tooltip: tooltip(unit, opts),
    xAxis: timeAxis(c),
    yAxis: valueAxis(c, unit, opts, bounds),
    series,
  };
}

export function gaugeOption(p, c) {
  const min = p.min ?? 0;
  const max = p.max ?? Math.max(1, (p.value ?? 0) * 1.5);
  const t = p.thresholds || {};
  const frac = (v) => Math.min(1, Math.max(0, (v - min) / (max - min || 1)));
  const stops = [];
  if (t.critical != null && t.warning != null) {
    if (t.direction === "lower_is_better") {
      stops.push([frac(t.warning), c.ok], [frac(t.critical), c.warning], [1, c.critical]);
    } else {
      stops.push([frac(t.critical), c.critical], [frac(t.warning), c.warning], [1, c.ok]);
    }
  } else {
    stops.push([1, c.ok]);
  }
  return {
    ...base(c),
    series: [{
      type: "gauge", min, max, radius: "95%", center: ["50%", "60%"],
      startAngle: 200, endAngle: -20,
      axisLine: { lineStyle: { width: 14, color: stops } },
      pointer: { itemStyle: { color: c.text }, width: 4 },
      axisTick: { show: false }, splitLine: { length: 10, lineStyle: { color: c.muted } },
      axisLabel: { color: c.muted, distance: 18, fontSize: 10, formatter: axisFormatter(p.unit) },
      detail: { valueAnimation: false, color: c.text, fontSize: 18, offsetCenter: [0, "40%"],
        formatter: () => p.formatted ?? formatValue(p.value, p.unit) },
      data: [{ value: p.value ?? min, name: p.title || "" }],
      title: { show: false },
    }],
  };
}

export function funnelOption(p, c) {
  return {
    ...base(c),
    tooltip: { trigger: "item", formatter: (x) => `${x.name}: ${formatValue(x.value, "count")}` },
    legend: { show: false },
    series: [{
      type: "funnel", sort: "none", left: "4%", width: "56%", top: 8, bottom: 8, gap: 2,
      minSize: "6%",
      label: { color: c.text, position: "right",
        formatter: (x) => `${x.name}: ${formatValue(x.value, "count")}` },
      labelLine: { lineStyle: { color: c.muted } },
      data: (p.steps || []).map((s) => ({ name: s.name, value: s.count })),
    }],
  };
}

export function cohortOption(p, c) {
  const cohorts = p.cohorts || [];
  const periods = Math.max(0, ...cohorts.map((x) => (x.retention || []).length));
  const ys = cohorts.map((x) => `${new Date(x.start).toISOString().slice(0, 10)} (${x.size})`);
  const data = [];
  cohorts.forEach((x, row) => (x.retention || []).forEach((v, col) => {
    if (v != null) data.push([col, row, v]);
  }));
  return {
    ...base(c),
    grid: { left: 8, right: 16, top: 8, bottom: 40, containLabel: true },
    tooltip: { formatter: (x) => `${ys[x.value[1]]}, ${p.period || "period"} ${x.value[0]}: ${formatValue(x.value[2], "percent")}` },
    xAxis: { type: "category", data: [...Array(periods).keys()].map((i) => `${i}`),
      name: p.period || "period", nameLocation: "middle", nameGap: 22, axisLabel: { color: c.muted } },
    yAxis: { type: "category", data: ys, inverse: true, axisLabel: { color: c.muted } },
    visualMap: { min: 0, max: 1, show: false, inRange: { color: [c.border, c.palette[0]] } },
    series: [{ type: "heatmap", data,
      label: { show: periods <= 12, color: c.text, fontSize: 10,
        formatter: (x) => `${Math.round(x.value[2] * 100)}%` } }],
  };
}

export function barOption(p, c) {
  const bars = p.bars || [];
  return {
    ...base(c),
    tooltip: { trigger: "axis", valueFormatter: (v) => formatValue(v, p.unit) },
    xAxis: { type: "category", data: bars.map((b) => b.label), axisLabel: { color: c.muted, interval: 0, rotate: bars.length > 6 ? 30 : 0 } },
    yAxis: { ...valueAxis(c, p.unit, {}, null), scale: false },
    series: [{ type: "bar", data: bars.map((b) => b.value), itemStyle: { color: c.palette[0] },
      label: { show: bars.length <= 8, position: "top", color: c.text,
        formatter: (x) => bars[x.dataIndex].formatted ?? formatValue(x.value, p.unit) } }],
  };
}

export function scatterOption(p, c) {
  const points = p.points || [];
  // Large mode draws the points as one shape rather than one element each: hundreds of points
  // (a point per interval) otherwise cost a few hundred milliseconds.
  const series = [{ type: "scatter", name: `${p.y?.name} vs ${p.x?.name}`, data: points,
    symbolSize: 7, itemStyle: { color: c.palette[0], opacity: 0.75 },
    large: true, largeThreshold: 200 }];
  const r = p.regression;
  if (r && points.length) {
    const xs = points.map((q) => q[0]);
    const lo = Math.min(...xs);
    const hi = Math.max(...xs);
    series.push(line("Regression", [[lo, r.intercept + r.slope * lo], [hi, r.intercept + r.slope * hi]],
      { lineStyle: { color: c.palette[5], width: 2 }, itemStyle: { color: c.palette[5] }, tooltip: { show: false } }));
  }
  return {
    ...base(c),
    grid: { left: 8, right: 16, top: 28, bottom: 24, containLabel: true },
    tooltip: { trigger: "item", formatter: (x) => `${p.x?.name}: ${formatValue(x.value[0], p.x?.unit)}<br>${p.y?.name}: ${formatValue(x.value[1], p.y?.unit)}` },
    xAxis: { ...valueAxis(c, p.x?.unit, {}, null), name: p.x?.name, nameLocation: "middle", nameGap: 24 },
    legend: { show: false },
    yAxis: { ...valueAxis(c, p.y?.unit, {}, null), name: p.y?.name, nameTextStyle: { align: "left", color: c.muted } },
    series,
  };
}
