// /reports: the scheduled reports (GET /api/v1/reports) with their next run in the report's
// time zone and their last run's delivery per channel; choosing one shows its preview and runs
// (reports_preview.js). `?report=NAME` in the URL chooses it on load.
import { getJSON } from "../api.js";
import { el, setupRefresh, showError } from "../common.js";
import { channelBadges, runBadge, runWhen, when } from "./reports_format.js";
import { loadRuns, select, setupDetail } from "./reports_preview.js";

const AUDIENCE = {
  executive: "Executive", operations: "Operations", engineering: "Engineering", owner: "Owners",
  hygiene: "Hygiene",
};
let reports = [];

function nextRun(r) {
  if (!r.enabled) return [el("span", { class: "muted" }, "disabled")];
  const [first] = r.next;
  if (!first) return [el("span", { class: "muted" }, "–")];
  const title = r.next.map((n) => `${n.local.replace("T", " ")} = ${n.utc.slice(0, 16).replace("T", " ")} UTC`).join("\n");
  return [el("time", { datetime: new Date(first.ms).toISOString(), title, "data-ms": first.ms },
    when(first.ms, r.timezone))];
}

function lastRun(r, deliveries) {
  if (!r.last_run) return [runBadge(r.status)];
  return [runBadge(r.status), " ", runWhen(r.last_run, r.timezone),
    el("div", { "data-deliveries": "" }, ...channelBadges(deliveries))];
}

/** Show report `name` and scroll to its card `target` (the preview, or its runs). */
function choose(name, target = "report-detail") {
  const found = reports.find((r) => r.name === name);
  if (!found) {
    showError(`No report named ${name}: choose one of the list.`);
    return;
  }
  const url = new URL(window.location.href);
  url.searchParams.set("report", name);
  url.hash = target === "report-detail" ? "" : target;
  history.replaceState(null, "", url);
  select(found);
  document.getElementById(target).scrollIntoView({ block: "start" });
}

function actions(r) {
  const preview = el("button", { type: "button", class: "btn", "aria-label": `Preview ${r.title}` }, "Preview");
  preview.addEventListener("click", () => choose(r.name));
  const runs = el("a", { href: `/reports?report=${encodeURIComponent(r.name)}#report-runs-card` }, "Runs");
  runs.addEventListener("click", (event) => { event.preventDefault(); choose(r.name, "report-runs-card"); });
  return [preview, " ", runs];
}

function row(r, deliveries) {
  const cells = [
    [el("strong", {}, r.title), el("div", {}, el("code", {}, r.name))],
    AUDIENCE[r.audience] ?? r.audience,
    [el("code", {}, r.schedule), el("div", { class: "muted" }, r.timezone)],
    [...nextRun(r), el("div", { class: "muted" }, r.timezone)],
    lastRun(r, deliveries),
    actions(r),
  ];
  return el("tr", { "data-report": r.name, "data-status": r.status },
    cells.map((c) => el("td", {}, ...(Array.isArray(c) ? c : [c]))));
}

function render(list, deliveries) {
  const box = document.getElementById("reports-list");
  if (!list.length) {
    box.replaceChildren(el("p", { class: "muted" }, "No reports: add one under config/reports/ (docs/reports.md)."));
    return;
  }
  const heads = ["Report", "Audience", "Schedule", "Next run", "Last run", ""];
  box.replaceChildren(el("div", { class: "table-wrap" }, el("table", { id: "reports-table" },
    el("thead", {}, el("tr", {}, heads.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, list.map((r) => row(r, deliveries[r.name]))))));
}

/** The last run's channels of each report that has run (the list gives the run only). */
async function lastDeliveries(list) {
  const ran = list.filter((r) => r.last_run);
  const runs = await Promise.all(ran.map((r) =>
    getJSON(`/api/v1/reports/${encodeURIComponent(r.name)}/runs`, { limit: 1 }).catch(() => [])));
  return Object.fromEntries(ran.map((r, i) => [r.name, runs[i][0]?.deliveries ?? []]));
}

async function load() {
  try {
    reports = await getJSON("/api/v1/reports");
    render(reports, await lastDeliveries(reports));
    showError("");
  } catch (err) {
    showError(err.message);
  }
  document.body.dataset.loaded = String(Date.now());
}

setupDetail(async () => { await load(); await loadRuns(); });
setupRefresh(60, async () => { await load(); await loadRuns().catch(() => {}); });
load().then(() => {
  const wanted = new URLSearchParams(window.location.search).get("report");
  if (wanted) choose(wanted, window.location.hash === "#report-runs-card" ? "report-runs-card" : "report-detail");
});
