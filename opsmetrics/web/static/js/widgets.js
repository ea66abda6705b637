// One renderer per dashboard widget type (docs/dashboards.md); each returns a card element and
// draws its chart once the card is in the page.
import * as charts from "./charts.js";
import { el } from "./common.js";
import { formatChange, formatTime, formatValue, statusBadge } from "./format.js";
import { withRange } from "./range.js";
import { sparkline } from "./spark.js";

const DEFAULT_WIDTH = {
  metric_card: 3, gauge: 3, trend_chart: 6, status_grid: 6, funnel: 6, cohort: 6, table: 6,
  bar: 6, scatter: 6, alert_list: 6, text: 6, experiment: 6,
};

function chartBox(label, size = "") {
  return el("div", { class: `chart ${size}`.trim(), role: "img", "aria-label": label });
}

function link(href, text) {
  return href ? el("a", { href: withRange(href), "data-keep-range": true }, text) : text;
}

// A KPI whose source stopped (p.stale: notes, docs/dashboards.md): the value is not current.
function staleBadge(p) {
  if (!p.stale?.length) return [];
  const b = statusBadge("warning", "Stale");
  b.title = p.stale.join("; ");
  b.dataset.stale = "";
  return [b];
}

function metricCard(p, body) {
  const value = el("div", { class: "metric-value" }, p.formatted ?? formatValue(p.value, p.unit));
  const meta = el("div", { class: "metric-meta" }, ...staleBadge(p), statusBadge(p.status, p.status_text));
  if (p.delta) {
    const cls = p.delta.good === true ? "delta-good" : p.delta.good === false ? "delta-bad" : "";
    const arrow = (p.delta.value ?? 0) > 0 ? "▲" : (p.delta.value ?? 0) < 0 ? "▼" : "■";
    const pct = p.delta.pct != null ? ` (${formatChange(p.delta.pct)})` : "";
    meta.append(el("span", { class: cls, title: "Change against the comparison period" },
      `${arrow} ${p.delta.formatted ?? formatValue(p.delta.value, p.unit)}${pct}`));
  }
  if (p.target != null) {
    meta.append(el("span", { class: "muted" }, `Target ${p.target_formatted ?? formatValue(p.target, p.unit)}`));
  }
  body.append(value, meta);
  if (!p.sparkline?.some((q) => q[1] != null)) {
    body.append(el("p", { class: "muted" }, "No trend in this range."));
    return null;
  }
  const spark = el("div", { class: "spark" });
  sparkline(spark, p.sparkline, { title: p.title, unit: p.unit });
  body.append(spark);
  return null;
}

function trendChart(p, body) {
  const box = chartBox(`${p.title}: values over time`);
  body.append(box);
  const links = (p.series || []).filter((s) => s.link);
  if (links.length) {
    body.append(el("p", { class: "muted" }, "Details: ",
      ...links.flatMap((s, i) => [i ? ", " : "", link(s.link, s.label || s.name)])));
  }
  return () => charts.draw(box, () => charts.trendOption(p));
}

function gauge(p, body) {
  const box = chartBox(`${p.title}: ${p.formatted ?? formatValue(p.value, p.unit)}`);
  body.append(box, el("div", { class: "metric-meta" }, ...staleBadge(p), statusBadge(p.status, p.status_text)));
  return () => charts.draw(box, () => charts.gaugeOption(p));
}

function statusGrid(p, body) {
  const grid = el("div", { class: "status-grid" });
  for (const item of p.items || []) {
    grid.append(el("div", { class: `status-cell status-${item.status || "unknown"}` },
      el("div", {}, link(item.link, item.title || item.name)),
      el("div", { class: "metric-value", style: "font-size:1.2rem" }, item.formatted ?? "–"),
      ...staleBadge(item), statusBadge(item.status, item.status_text)));
  }
  body.append(grid);
}

function funnel(p, body) {
  const box = chartBox(`${p.title}: funnel`);
  const rows = (p.steps || []).map((s) => [s.name, formatValue(s.count, "count"),
    formatValue(s.rate_from_start, "percent"), formatValue(s.rate_from_previous, "percent")]);
  body.append(box, table(["Step", "Entities", "From start", "From previous"], rows));
  return () => charts.draw(box, () => charts.funnelOption(p));
}

function cohort(p, body) {
  const box = chartBox(`${p.title}: retention by cohort`, "chart-lg");
  body.append(box);
  return () => charts.draw(box, () => charts.cohortOption(p));
}

export function table(columns, rows, links = []) {
  const head = el("tr", {}, columns.map((c) => el("th", { scope: "col" }, c)));
  const body = rows.map((row, i) => el("tr", {}, row.map((cell, j) => {
    const text = cell === null || cell === undefined ? "–" : String(cell);
    const content = j === 0 && links[i] ? link(links[i], text) : text;
    return el("td", { class: typeof cell === "number" ? "num" : null }, content);
  })));
  return el("div", { class: "table-wrap" }, el("table", {}, el("thead", {}, head), el("tbody", {}, body)));
}

function tableWidget(p, body) {
  const rows = (p.rows || []).map((row) => row.map((cell) =>
    cell && typeof cell === "object" ? statusCell(cell) : cell));
  body.append(table(p.columns || [], rows, p.links || []));
}

function statusCell(cell) {
  return cell.formatted ?? cell.status_text ?? cell.text ?? JSON.stringify(cell);
}

function bar(p, body) {
  const box = chartBox(`${p.title}: bars`);
  body.append(box);
  return () => charts.draw(box, () => charts.barOption(p));
}

function scatter(p, body) {
  const box = chartBox(`${p.title}: scatter plot`);
  body.append(box);
  const r = p.regression;
  if (r) {
    const pv = r.p_value != null ? `, p = ${r.p_value < 0.001 ? "< 0.001" : r.p_value.toFixed(3)}` : "";
    body.append(el("p", { class: "muted" }, `r = ${r.r?.toFixed(2)}${pv}`));
  }
  if (p.finding) body.append(el("p", {}, p.finding));
  return () => charts.draw(box, () => charts.scatterOption(p));
}

function alertList(p, body) {
  const alerts = p.alerts || [];
  if (!alerts.length) {
    body.append(el("p", { class: "muted" }, "No active alerts."));
    return;
  }
  const rows = alerts.map((a) => [a.name, a.severity ?? "–",
    a.acknowledged ? `${a.state} (acknowledged)` : a.state, a.summary ?? "", formatTime(a.active_at)]);
  body.append(table(["Alert", "Severity", "State", "Summary", "Active since"], rows));
  body.append(el("p", {}, link("/alerts", "All alerts")));
}

function text(p, body) {
  const box = el("div", { class: "markdown" });
  box.innerHTML = p.html || ""; // rendered and escaped by the server
  body.append(box);
}

function experiment(p, body) {
  const r = p.result;
  if (!r) {
    body.append(el("p", { class: "muted" }, "No result yet."));
    return;
  }
  const exposures = Object.entries(r.exposures || {}).map(([v, n]) => `${v}: ${formatValue(n, "count")}`);
  const srm = r.srm?.mismatch
    ? statusBadge("critical", `Sample ratio mismatch (p = ${fmtP(r.srm.p_value)})`)
    : statusBadge("ok", "Sample ratio OK");
  body.append(el("p", {}, `Units — ${exposures.join(", ") || "none"} `, srm));
  const metrics = [["primary", r.primary], ...(r.guardrails || []).map((g) => ["guardrail", g])]
    .filter(([, m]) => m);
  const rows = metrics.flatMap(([role, m]) => (m.comparisons || []).map((c) => [
    m.name, role, c.variant, effectText(c), fmtP(c.p_value), verdict(c, role),
  ]));
  if (rows.length) body.append(table(["Metric", "Role", "Variant", "Effect (95 % CI)", "p", "Verdict"], rows));
  if (r.plan?.progress != null) {
    body.append(el("p", { class: "muted" }, `Progress to the planned sample: ${formatValue(r.plan.progress, "percent")}`));
  }
  for (const w of r.warnings || []) body.append(el("p", { class: "error-box" }, String(w)));
}

function fmtP(v) {
  if (v == null) return "–";
  return v < 0.001 ? "< 0.001" : v.toFixed(3);
}

function effectText(c) {
  if (c.relative_effect == null) return "–";
  const ci = c.relative_ci_low != null
    ? ` (${formatChange(c.relative_ci_low)} to ${formatChange(c.relative_ci_high)})` : "";
  return `${formatChange(c.relative_effect)}${ci}`;
}

function verdict(c, role) {
  if (c.harmed) return "Harmed";
  if (!c.significant) return "Not significant";
  return role === "guardrail" ? "Significant change" : "Significant";
}

const RENDERERS = {
  metric_card: metricCard, trend_chart: trendChart, gauge, status_grid: statusGrid, funnel,
  cohort, table: tableWidget, bar, scatter, alert_list: alertList, text, experiment,
};

/** The card for widget definition `w` with its data `payload`; `.draw()` after insertion. */
export function renderWidget(w, payload) {
  const width = w.width || DEFAULT_WIDTH[w.type] || 6;
  const title = payload?.title || w.title || (w.type === "text" ? "Notes" : w.type.replaceAll("_", " "));
  const card = el("section", {
    class: `card span-${Math.min(12, Math.max(1, width))} widget widget-${w.type}`,
    "data-widget": w.id, "data-type": w.type, "aria-label": title,
  });
  card.append(el("h3", { class: "card-title" }, payload?.link ? link(payload.link, title) : title));
  let drawer = null;
  if (!payload) {
    card.append(el("p", { class: "muted" }, "No data."));
  } else if (payload.error) {
    card.append(el("div", { class: "error-box widget-error", role: "alert" }, payload.error));
  } else {
    const render = RENDERERS[w.type];
    if (render) drawer = render(payload, card) || null;
    else card.append(el("div", { class: "error-box" }, `Unknown widget type ${w.type}`));
  }
  return { card, draw: () => drawer && drawer() };
}
