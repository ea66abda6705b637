// /: every KPI by level with status, owner, value against target and a small trend, a marker
// on the KPIs due or overdue for their owner's review; dashboards.
import { getJSON } from "../api.js";
import { el, setupRefresh, showError } from "../common.js";
import { formatValue, kpiStatusText, statusBadge } from "../format.js";
import { currentRange, grainFor, withRange } from "../range.js";
import { sparkline as drawSparkline } from "../spark.js";

const LEVELS = [["strategic", "Strategic"], ["tactical", "Tactical"], ["operational", "Operational"]];
const PARALLEL = 4;
const levelsBox = document.getElementById("kpi-levels");

function opts(kpi) {
  return { currency: kpi.currency, decimals: kpi.decimals ?? undefined };
}

// Input events its evaluation left out (meta.excluded), and why the value is empty if so.
function excludedLines(kpi) {
  const lines = [...(kpi.meta?.excluded?.warnings ?? [])];
  if (kpi.current?.note) lines.push(kpi.current.note);
  return lines.map((line) => el("p", { class: "warning-box", "data-warning": "excluded" }, line));
}

function tile(kpi) {
  const value = kpi.current?.value ?? null;
  const target = kpi.current?.target ?? (typeof kpi.target === "number" ? kpi.target : null);
  const href = withRange(`/kpis/${encodeURIComponent(kpi.name)}`);
  const spark = el("div", { class: "spark", role: "img", "aria-label": `${kpi.title || kpi.name} trend (loading)` });
  const card = el("article", { class: "card kpi-tile", "data-kpi": kpi.name },
    el("h3", { class: "card-title" }, el("a", { href, "data-keep-range": true }, kpi.title || kpi.name)),
    el("div", { class: "metric-value" }, formatValue(value, kpi.unit, opts(kpi))),
    el("div", { class: "metric-meta" }, statusBadge(kpi.error ? "unknown" : kpi.status,
      kpi.error ? "Error" : kpiStatusText(kpi, kpi.status)),
    target != null ? el("span", { class: "muted" }, `Target ${formatValue(target, kpi.unit, opts(kpi))}`) : null,
    el("span", { class: "muted" }, `Owner: ${kpi.owner || "–"}`)),
    kpi.error ? el("p", { class: "error-box" }, kpi.error) : null,
    ...excludedLines(kpi),
    spark);
  return { card, spark };
}

async function trend(kpi, box) {
  const range = currentRange();
  try {
    const series = await getJSON(`/api/v1/kpis/${encodeURIComponent(kpi.name)}/series`, {
      from: Math.floor(range.startMs / 1000), to: Math.floor(range.endMs / 1000),
      grain: grainFor(kpi.grain, range),
    });
    const points = (series.points || []).map((p) => [Date.parse(p.t), p.value]);
    if (!points.some((p) => p[1] != null)) {
      box.replaceWith(el("p", { class: "muted" }, "No values in this range."));
      return;
    }
    drawSparkline(box, points, { title: kpi.title || kpi.name, unit: kpi.unit, opts: opts(kpi) });
  } catch (err) {
    box.replaceWith(el("p", { class: "muted" }, `Trend unavailable: ${err.message}`));
  }
}

async function pool(jobs, size) {
  const queue = [...jobs];
  const worker = async () => { while (queue.length) await queue.shift()(); };
  await Promise.all(Array.from({ length: size }, worker));
}

// The review list (GET /api/v1/reviews): a marker on each tile whose review is due or overdue.
async function markReviews() {
  const list = await getJSON("/api/v1/reviews");
  for (const group of list.owners) {
    for (const k of group.kpis) {
      if (k.state === "reviewed") continue;
      const meta = levelsBox.querySelector(`[data-kpi="${CSS.escape(k.kpi)}"] .metric-meta`);
      meta?.append(el("a", { class: `status status-${k.state === "overdue" ? "critical" : "warning"}`,
        href: withRange(`/kpis/${encodeURIComponent(k.kpi)}#kpi-review-card`), "data-review": k.state,
        title: `${k.standing}. ${k.todo}` }, k.state === "overdue" ? `Review ${k.standing}` : "Review due"));
    }
  }
}

async function loadKpis() {
  const kpis = await getJSON("/api/v1/kpis");
  const groups = new Map(LEVELS.map(([key]) => [key, []]));
  for (const kpi of kpis) {
    const level = groups.has(kpi.level) ? kpi.level : "other";
    if (!groups.has(level)) groups.set(level, []);
    groups.get(level).push(kpi);
  }
  const parts = [];
  const jobs = [];
  for (const [level, list] of groups) {
    if (!list.length) continue;
    const label = LEVELS.find(([key]) => key === level)?.[1] ?? "Other";
    const box = el("div", { class: "kpi-tiles" });
    for (const kpi of list) {
      const { card, spark } = tile(kpi);
      box.append(card);
      jobs.push(() => trend(kpi, spark));
    }
    parts.push(el("section", { "aria-label": `${label} KPIs`, "data-level": level },
      el("h2", {}, `${label} (${list.length})`), box));
  }
  levelsBox.replaceChildren(...(parts.length ? parts : [el("p", { class: "muted" }, "No KPIs defined.")]));
  await Promise.all([pool(jobs, PARALLEL), markReviews()]);
}

async function loadDashboards() {
  const list = document.getElementById("dashboard-list");
  const dashboards = await getJSON("/api/v1/dashboards");
  const items = dashboards.map((d) => el("li", {},
    el("a", { href: withRange(`/dashboards/${encodeURIComponent(d.name)}`), "data-keep-range": true },
      el("strong", {}, d.title || d.name), el("br"),
      el("span", { class: "muted" }, `${d.audience || ""} · ${d.widgets} widgets`))));
  list.replaceChildren(...(items.length ? items : [el("li", { class: "muted" }, "No dashboards defined.")]));
}

async function load() {
  const results = await Promise.allSettled([loadDashboards(), loadKpis()]);
  const failed = results.filter((r) => r.status === "rejected").map((r) => r.reason.message);
  showError(failed.join("\n"));
  document.body.dataset.loaded = String(Date.now());
}

window.addEventListener("rangechange", load);
setupRefresh(0, load);
load();
