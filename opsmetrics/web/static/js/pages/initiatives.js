// /initiatives: every improvement initiative; /initiatives/{name}: its measured impact per KPI,
// the KPI before and after the start against the counterfactual (what it would have been).
import { getJSON } from "../api.js";
import * as charts from "../charts.js";
import { el, showError } from "../common.js";
import { formatTime, statusBadge } from "../format.js";
import { table } from "../widgets.js";

const root = document.getElementById("initiatives-page");
const name = root.dataset.initiative;
const box = document.getElementById("initiatives");
const pct = (x) => (x == null ? "–" : `${x >= 0 ? "+" : ""}${(x * 100).toFixed(1)}%`);
const day = (ms) => (ms == null ? "–" : new Date(ms).toISOString().slice(0, 10));
const VERDICT = { improved: "ok", worsened: "critical", "no detectable change": "warning" };

async function list() {
  const all = await getJSON("/api/v1/initiatives");
  if (!all.length) {
    box.replaceChildren(el("p", { class: "muted" }, "No initiatives: see docs/initiatives.md."));
    return;
  }
  const rows = all.map((i) => [i.name, i.title, i.owner, day(i.start_ms), day(i.end_ms),
    i.kpis.map((k) => `${k.kpi} ${k.direction === "up" ? "↑" : "↓"}`).join(", ")]);
  const links = all.map((i) => `/initiatives/${encodeURIComponent(i.name)}`);
  box.replaceChildren(table(["Name", "Title", "Owner", "Start", "End", "KPIs"], rows, links));
}

function kpiCard(k, start) {
  const chart = el("div", { class: "chart chart-lg", role: "img",
    "aria-label": `${k.kpi} before and after the start, with the counterfactual` });
  const verdict = statusBadge(VERDICT[k.verdict] ?? "unknown", k.verdict);
  verdict.dataset.verdict = k.verdict;
  const card = el("section", { class: "card span-12", "data-kpi": k.kpi },
    el("h2", { class: "card-title" }, el("a", { href: `/kpis/${encodeURIComponent(k.kpi)}` }, k.kpi), " ", verdict),
    el("p", {}, `Expected ${pct(k.expected)}; measured ${pct(k.relative)} `,
      `(95% interval ${pct(k.relative_low)} to ${pct(k.relative_high)}), method ${k.method}, `,
      `${k.pre_points} days before and ${k.post_points} after.`),
    el("p", { class: "muted" }, k.explanation), chart);
  const payload = { unit: "", series: [
    { name: "value", label: k.kpi, points: k.points.map((p) => [p[0], p[1]]) },
    { name: "counterfactual", label: "Without the initiative", points: k.points.map((p) => [p[0], p[2]]) },
  ], annotations: [{ ts: start, title: "Start" }] };
  charts.draw(chart, () => charts.trendOption(payload));
  return card;
}

async function one() {
  const d = await getJSON(`/api/v1/initiatives/${encodeURIComponent(name)}/impact`);
  document.getElementById("initiative-title").textContent = d.title;
  document.getElementById("initiative-description").textContent =
    `${d.owner} · from ${formatTime(d.start_ms)}${d.end_ms ? ` to ${formatTime(d.end_ms)}` : ""}` +
    `${d.description ? ` · ${d.description}` : ""}`;
  box.replaceChildren(el("div", { class: "grid" }, d.impact.map((k) => kpiCard(k, d.start_ms))));
}

async function start() {
  try {
    await (name ? one() : list());
  } catch (err) {
    showError(err.message);
  }
  await charts.ready();
  document.body.dataset.loaded = String(Date.now());
}

start();
