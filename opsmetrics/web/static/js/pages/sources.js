// /sources: every source with a status per data-quality monitor (GET /api/v1/quality), and the
// SQL sources' runs (GET /api/v1/sources). A monitor's detail is in its badge's title and in
// the first cell for those in warning or critical, so nothing is told by colour alone.
import { getJSON } from "../api.js";
import { el, setupRefresh, showError } from "../common.js";
import { formatTime, statusBadge } from "../format.js";
import { table } from "../widgets.js";

const MONITORS = [
  ["freshness", "Freshness"], ["volume", "Volume"], ["completeness", "Completeness"],
  ["schema_drift", "Schema drift"], ["duplicates", "Duplicates"],
];
const KIND = { sql: "SQL", event: "Events", metric: "Metric", scrape: "Scrape job" };
const RANK = { critical: 3, warning: 2, ok: 1 };
const WORDS = { ok: "OK", unknown: "Not judged", disabled: "Disabled" };
// Short and on one line (no-break spaces): "Jan 4, 00:12" in local time.
const when = (s) => (s == null ? "–" : new Date(s * 1000).toLocaleString(undefined, {
  month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
}).replace(/\s/g, "\u00a0"));
const span = (s) => (s == null ? "–" : s >= 3600 ? `${+(s / 3600).toFixed(1)} h` : `${Math.round(s / 60)} min`);

function badge(check) {
  if (!check) return el("span", { class: "muted" }, "–");
  const b = statusBadge(check.status, WORDS[check.status] ?? null);
  b.title = check.detail;
  return b;
}

function problems(s) {
  const checks = Object.values(s.monitors).filter((c) => RANK[c.status] > 1);
  checks.sort((a, b) => RANK[b.status] - RANK[a.status]);
  return checks.map((c) => c.detail).join("; ");
}

// Under the source's name: what its monitors in warning or critical found, worst first, and since when it is stale.
function detail(s) {
  const text = [problems(s), s.stale_since ? `stale since ${when(s.stale_since)}` : ""].filter(Boolean);
  return text.length ? [el("div", { class: "muted", "data-detail": "" }, text.join("; "))] : [];
}

function row(s) {
  const cells = [
    [el("code", {}, s.id), ...detail(s)], KIND[s.kind] ?? s.kind, statusBadge(s.status, WORDS[s.status] ?? null),
    when(s.last_seen), span(s.expected_freshness_seconds),
    ...MONITORS.map(([m]) => badge(s.monitors[m])),
    s.kpis.length ? s.kpis.map((k, i) => [i ? ", " : "", el("a", { href: `/kpis/${encodeURIComponent(k)}` }, k)]).flat() : "–",
  ];
  return el("tr", { "data-source": s.id, "data-status": s.status },
    cells.map((c) => el("td", {}, ...(Array.isArray(c) ? c : [c]))));
}

function quality(report) {
  const box = document.getElementById("sources-quality");
  if (!report.sources.length) {
    box.replaceChildren(el("p", { class: "muted" }, "No data yet: push events or metrics, or define sources (docs/sources.md)."));
    return;
  }
  const heads = ["Source", "Kind", "Status", "Last seen", "Expected within",
    ...MONITORS.map(([, t]) => t), "KPIs"];
  box.replaceChildren(el("div", { class: "table-wrap" }, el("table", { id: "sources-table" },
    el("thead", {}, el("tr", {}, heads.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, report.sources.map(row)))));
}

function sql(list) {
  const box = document.getElementById("sources-sql");
  if (!list.length) {
    box.replaceChildren(el("p", { class: "muted" }, "No SQL sources: see docs/sources.md."));
    return;
  }
  const rows = list.map((s) => [s.name, s.driver, s.up == null ? "not run yet" : s.up ? "up" : "down",
    s.last_run ? formatTime(s.last_run.finished_ms) : "–", s.rows_total,
    s.lag_seconds == null ? "–" : span(s.lag_seconds), s.error || ""]);
  box.replaceChildren(table(["Name", "Driver", "State", "Last run", "Rows", "Lag", "Error"], rows));
}

async function load() {
  try {
    const [report, sqlSources] = await Promise.all([
      getJSON("/api/v1/quality"),
      getJSON("/api/v1/sources").catch(() => []),
    ]);
    quality(report);
    sql(sqlSources);
  } catch (err) {
    showError(err.message);
  }
  document.body.dataset.loaded = String(Date.now());
}

setupRefresh(60, load);
load();
