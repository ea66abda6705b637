// /kpis/{name}: definition, lineage, versions, values with target and thresholds, comparison
// with the previous period, breakdown by dimension, related alerts, the owner's review.
import { getJSON, postJSON } from "../api.js";
import * as charts from "../charts.js";
import { el, setupRefresh, showError } from "../common.js";
import { formatChange, formatTime, formatValue, kpiStatusText, statusBadge } from "../format.js";
import { currentRange, grainFor, refreshLinks, withRange } from "../range.js";
import { table } from "../widgets.js";

const root = document.getElementById("kpi-page");
const name = root.dataset.kpi;
const base = `/api/v1/kpis/${encodeURIComponent(name)}`;
let kpi = null;

const opts = () => ({ currency: kpi.currency, decimals: kpi.decimals ?? undefined });
const fmt = (v) => formatValue(v, kpi.unit, opts());
const ts = (p) => Date.parse(p.t);

function rangeParams(extra = {}) {
  const range = currentRange();
  return { from: Math.floor(range.startMs / 1000), to: Math.floor(range.endMs / 1000),
    grain: grainFor(kpi.grain, range), ...extra };
}

function definitionList() {
  const t = kpi.thresholds || {};
  const target = typeof kpi.target === "number" ? fmt(kpi.target)
    : (kpi.target || []).map((s) => `${fmt(s.value)} from ${s.from}`).join(", ") || "–";
  const rows = [
    ["Name", el("code", {}, kpi.name)], ["Owner", kpi.owner], ["Level", kpi.level],
    ["Indicator", kpi.indicator], ["Unit", kpi.unit + (kpi.currency ? ` (${kpi.currency})` : "")],
    ["Direction", kpi.direction?.replaceAll("_", " ")], ["Cadence", kpi.cadence], ["Grain", kpi.grain],
    ["Target", target],
    ["Thresholds", `warning ${t.warning != null ? fmt(t.warning) : "–"}, critical ${t.critical != null ? fmt(t.critical) : "–"}`],
    ["Formula", el("pre", { class: "diff" }, JSON.stringify(kpi.formula, null, 2))],
    ["Dimensions", kpi.dimensions?.join(", ") || "–"], ["Tags", kpi.tags?.join(", ") || "–"],
    ["Source", el("code", {}, kpi.source)], ["Version", kpi.version ? String(kpi.version.version) : "–"],
  ];
  document.getElementById("kpi-definition").replaceChildren(
    ...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v ?? "–")]));
  document.getElementById("kpi-description").textContent = kpi.description || "";
}

function lineage() {
  const l = kpi.lineage || { inputs: [], dependents: [] };
  const item = (x) => el("li", {}, `${x.kind}: `,
    x.kind === "kpi" ? el("a", { href: withRange(`/kpis/${encodeURIComponent(x.name)}`), "data-keep-range": true }, x.name)
      : x.kind === "dashboard" ? el("a", { href: withRange(`/dashboards/${encodeURIComponent(x.name)}`), "data-keep-range": true }, x.name)
        : el("code", {}, x.name));
  document.getElementById("kpi-lineage").replaceChildren(
    el("h3", { class: "card-title" }, "Reads"),
    l.inputs.length ? el("ul", {}, l.inputs.map(item)) : el("p", { class: "muted" }, "Nothing."),
    el("h3", { class: "card-title" }, "Used by"),
    l.dependents.length ? el("ul", {}, l.dependents.map(item)) : el("p", { class: "muted" }, "Nothing."),
    el("h3", { class: "card-title" }, "Comes from"),
    el("div", { id: "kpi-lineage-sources" }, el("p", { class: "muted" }, (l.sources || []).length ? "Loading…" : "No SQL source.")));
}

// lineage.sources: the SQL sources whose rows this KPI reads (docs/sources.md), with their
// last run from GET /api/v1/sources and a warning when the data quality monitors find them stale.
const hhmm = (ms) => new Date(ms).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
const lagText = (s) => (s == null ? "–" : s >= 3600 ? `${+(s / 3600).toFixed(1)} h` : s >= 60 ? `${Math.round(s / 60)} min` : `${Math.round(s)} s`);

// The stale source of the quality report that is this SQL source, or the events it writes.
function staleOf(up, staleSources) {
  const ids = new Set([`sql:${up.source}`, `event:${up.input}`, `metric:${up.input.split("{")[0]}`]);
  return staleSources.find((s) => ids.has(s.source));
}

function sourceItem(up, run, staleSources) {
  const stale = staleOf(up, staleSources);
  const state = !run ? "not configured on this server" : run.up == null ? "not run yet"
    : run.up ? "up" : `down: ${run.error}`;
  return el("li", { "data-source": up.source },
    el("a", { href: "/sources" }, up.source), ` (${up.driver}) reads `,
    up.tables.length ? up.tables.map((t, i) => [i ? ", " : "", el("code", {}, t)]).flat() : "–",
    ` into `, el("code", {}, up.input),
    el("div", { class: "muted" }, `${state} · last success ${run?.last_success_ms ? formatTime(run.last_success_ms) : "never"} · lag ${lagText(run?.lag_seconds)}`),
    stale ? el("p", { class: "warning-box", "data-warning": "stale-source" }, `stale since ${hhmm(Date.parse(stale.since))}`) : null);
}

async function sourceLineage() {
  const ups = kpi.lineage?.sources ?? [];
  if (!ups.length) return;
  // The KPI again for its stale_sources: the page refreshes, the definition loaded at start does not.
  const [list, now] = await Promise.all([getJSON("/api/v1/sources"), getJSON(base)]);
  const runs = new Map(list.map((s) => [s.name, s]));
  const stale = now.stale_sources ?? [];
  document.getElementById("kpi-lineage-sources").replaceChildren(
    el("ul", {}, ups.map((up) => sourceItem(up, runs.get(up.source), stale))));
}

// The initiatives meant to move this KPI (docs/initiatives.md): a line at the start, or a band
// from start to end.
async function initiativeMarks() {
  const all = await getJSON("/api/v1/initiatives");
  return all.filter((i) => i.kpis.some((k) => k.kpi === name))
    .map((i) => ({ ts: i.start_ms, end_ts: i.end_ms, title: `Initiative: ${i.title}` }));
}

function payloadFrom(series, marks = []) {
  const points = series.points.map((p) => [ts(p), p.value]);
  const compare = series.points.map((p) => [ts(p), p.compare]);
  const targets = new Set(series.points.map((p) => p.target).filter((v) => v != null));
  const out = {
    unit: kpi.unit,
    series: [{ name: kpi.name, label: kpi.title || kpi.name, points, compare_points: compare }],
    target: targets.size === 1 ? [...targets][0] : null,
    thresholds: { ...kpi.thresholds, direction: kpi.direction },
    annotations: marks,
  };
  if (targets.size > 1) {
    out.series.push({ name: "target", label: "Target", points: series.points.map((p) => [ts(p), p.target]) });
  }
  return out;
}

// meta.excluded: input events the evaluation left out (a missing property, a wrong type),
// and the note of each period that has no value because all of its inputs were left out.
function excludedWarnings(series) {
  const lines = [...(series.meta?.excluded?.warnings ?? [])];
  const notes = new Set(series.points.map((p) => p.note).filter(Boolean));
  lines.push(...[...notes].slice(0, 3));
  // A source the KPI reads that stopped (GET /api/v1/quality): its values are not current.
  const stale = (series.stale_sources ?? []).map((s) => el("p", { class: "warning-box", "data-warning": "stale" },
    `Not current: source ${s.source} stale since ${formatTime(Date.parse(s.since))}`));
  document.getElementById("kpi-excluded").replaceChildren(...stale,
    ...lines.map((line) => el("p", { class: "warning-box", "data-warning": "excluded" }, line)));
}

function summary(series) {
  const last = [...series.points].reverse().find((p) => p.value != null);
  const box = document.getElementById("kpi-summary");
  if (!last) {
    const note = series.points.map((p) => p.note).find(Boolean);
    box.replaceChildren(el("p", { class: "muted" }, note ? `No values in this range: ${note}` : "No values in this range."));
    return;
  }
  box.replaceChildren(el("div", { class: "metric-meta" },
    el("span", { class: "metric-value" }, fmt(last.value)), statusBadge(last.status, kpiStatusText(kpi, last.status)),
    el("span", { class: "muted" }, `${formatChange(last.change)} vs previous period`),
    el("span", { class: "muted" }, `Version ${series.version ?? "–"}, data as of ${series.freshness ? formatTime(Date.parse(series.freshness)) : "–"}`)));
}

function comparison(series) {
  const rows = series.points.slice(-12).reverse().map((p) => [
    formatTime(ts(p)), fmt(p.value), fmt(p.compare), formatChange(p.change), p.status ?? "unknown",
  ]);
  document.getElementById("kpi-compare").replaceChildren(
    table(["Period", "Value", "Previous period", "Change", "Status"], rows));
}

async function breakdown() {
  const card = document.getElementById("kpi-breakdown-card");
  if (!kpi.dimensions?.length) return;
  card.hidden = false;
  const select = document.getElementById("kpi-breakdown-dim");
  if (!select.options.length) {
    for (const d of kpi.dimensions) select.add(new Option(d, d));
    select.addEventListener("change", breakdown);
  }
  const dim = select.value;
  const series = await getJSON(`${base}/series`, rangeParams({ by: dim }));
  const groups = new Map();
  for (const p of series.points) {
    const key = p.group?.[dim] ?? "(none)";
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push([ts(p), p.value]);
  }
  const payload = { unit: kpi.unit, series: [...groups].map(([k, pts]) => ({ name: k, label: k, points: pts })) };
  charts.draw(document.getElementById("kpi-breakdown"), () => charts.trendOption(payload, opts()));
}

async function versions() {
  const list = await getJSON(`${base}/versions`);
  const items = [...list].reverse().map((v) => el("details", {},
    el("summary", {}, `Version ${v.version} · ${formatTime(Date.parse(v.recorded))} · ${v.author || "unknown"}`),
    el("pre", { class: "diff" }, v.diff || "(first version)")));
  document.getElementById("kpi-versions").replaceChildren(
    ...(items.length ? items : [el("p", { class: "muted" }, "No recorded versions.")]));
}

async function relatedAlerts() {
  const names = new Set((kpi.lineage?.dependents || []).map((d) => d.name));
  const data = await getJSON("/api/v1/alerts");
  const alerts = (data.alerts || data || []).filter((a) =>
    a.labels?.kpi === name || names.has(a.labels?.alertname));
  const box = document.getElementById("kpi-alerts");
  if (!alerts.length) {
    box.replaceChildren(el("p", { class: "muted" }, "No active alerts for this KPI."));
    return;
  }
  box.replaceChildren(table(["Alert", "Severity", "State", "Since"], alerts.map((a) => [
    a.labels?.alertname, a.labels?.severity ?? "–", a.state, formatTime(Date.parse(a.activeAt)),
  ])), el("p", {}, el("a", { href: withRange("/alerts"), "data-keep-range": true }, "All alerts")));
}

// The owner's review cycle (docs/reviews.md): standing, last review, history, the form.
const REVIEW_STATUS = { reviewed: "ok", due: "warning", overdue: "critical" };

async function review() {
  const r = await getJSON(`${base}/reviews`);
  const last = r.last_review;
  const rows = [
    ["Owner", r.owner], ["Cadence", r.cadence],
    ["Standing", el("span", { class: `status status-${REVIEW_STATUS[r.state] || "unknown"}`, "data-review": r.state }, r.standing)],
    ["Next due", r.due ? formatTime(Date.parse(r.due)) : "now"],
    ["Last review", last ? `${formatTime(Date.parse(last.reviewed))} by ${last.author}` : "never"],
    ["Note", last?.note || "–"],
  ];
  const history = r.reviews.slice(1, 6).map((x) => el("li", {},
    `${formatTime(Date.parse(x.reviewed))} · ${x.author}${x.note ? `: ${x.note}` : ""}`));
  const parts = [
    el("dl", { class: "deflist", id: "kpi-review-standing" }, rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v ?? "–")])),
    r.flags.length ? el("p", { class: "muted" }, `Listed for review: ${r.flags.join(", ")}. ${r.todo}`) : null,
    history.length ? el("details", {}, el("summary", {}, "Earlier reviews"), el("ul", {}, history)) : null];
  document.getElementById("kpi-review").replaceChildren(...parts.filter(Boolean));
}

async function submitReview(event) {
  event.preventDefault();
  const form = event.target;
  const result = document.getElementById("kpi-review-result");
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    await postJSON(`${base}/reviews`, { author: form.elements.author.value.trim(), note: form.elements.note.value.trim() });
    form.elements.note.value = "";
    result.textContent = "Marked reviewed.";
    await review();
  } catch (err) {
    result.textContent = `Could not mark it reviewed: ${err.message}`;
  } finally {
    button.disabled = false;
  }
}

async function loadSeries() {
  const [series, marks] = await Promise.all([
    getJSON(`${base}/series`, rangeParams({ compare: "previous" })), initiativeMarks()]);
  excludedWarnings(series);
  summary(series);
  comparison(series);
  charts.draw(document.getElementById("kpi-chart"), () => charts.trendOption(payloadFrom(series, marks), opts()));
}

async function load() {
  const jobs = [loadSeries(), breakdown(), relatedAlerts(), versions(), review(), sourceLineage()];
  const results = await Promise.allSettled(jobs);
  showError(results.filter((r) => r.status === "rejected").map((r) => r.reason.message).join("\n"));
  refreshLinks(root);
  await charts.ready(); // the chart library is deferred: draws queued until it has run
  document.body.dataset.loaded = String(Date.now());
}

async function start() {
  try {
    kpi = await getJSON(base);
  } catch (err) {
    showError(err.message);
    return;
  }
  definitionList();
  lineage();
  window.addEventListener("rangechange", load);
  document.getElementById("kpi-review-form").addEventListener("submit", submitReview);
  setupRefresh(0, load);
  await load();
}

start();
