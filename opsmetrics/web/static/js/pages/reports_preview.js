// The /reports page's detail of one report: its preview in a sandboxed iframe (the page route
// /reports/{name}/preview, which takes the sign-in cookie as navigations cannot send a bearer
// header), PDF and CSV links, "Send now" for admins, and its runs.
import { getJSON, postJSON } from "../api.js";
import { el, showError } from "../common.js";
import { table } from "../widgets.js";
import { channelBadges, runBadge, runWhen, when } from "./reports_format.js";

const RUNS_SHOWN = 20;
let current = null;

const quoted = (name) => encodeURIComponent(name);

function previewURL(name, format, at) {
  const url = new URL(`/reports/${quoted(name)}/preview`, window.location.origin);
  url.searchParams.set("format", format);
  if (at) url.searchParams.set("at", at);
  return url.pathname + url.search;
}

/** The `at` input as RFC 3339 (UTC), or "" for now. */
function chosenAt() {
  const value = document.querySelector("#preview-form input[name=at]").value;
  return value ? new Date(value).toISOString() : "";
}

function showPreview() {
  const at = chosenAt();
  const frame = document.getElementById("preview-frame");
  const asOf = at ? `as of ${when(Date.parse(at), current.timezone)} ${current.timezone}` : "as of now";
  frame.dataset.shown = `${current.title}, ${asOf}`;
  document.getElementById("preview-status").textContent = `Rendering ${frame.dataset.shown}…`;
  frame.dataset.loaded = "";
  frame.src = previewURL(current.name, "html", at);
  document.getElementById("preview-pdf").href = previewURL(current.name, "pdf", at);
  document.getElementById("preview-csv").href = previewURL(current.name, "csv", at);
  document.getElementById("preview-html").href = previewURL(current.name, "html", at);
}

function runRows(runs) {
  return runs.map((r) => [runWhen(r, current.timezone), runBadge(r.status), channelBadges(r.deliveries),
    when(r.finished_ms, current.timezone), r.error || "", el("code", {}, r.run_id)]);
}

export async function loadRuns() {
  if (!current) return;
  const box = document.getElementById("report-runs");
  const runs = await getJSON(`/api/v1/reports/${quoted(current.name)}/runs`, { limit: RUNS_SHOWN });
  if (!runs.length) {
    box.replaceChildren(el("p", { class: "muted" }, "Not run yet."));
    return;
  }
  const heads = ["Slot", "Status", "Channels", "Finished", "Error", "Run id"];
  const rows = runRows(runs);
  box.replaceChildren(el("div", { class: "table-wrap" }, el("table", { id: "runs-table" },
    el("thead", {}, el("tr", {}, heads.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows.map((cells, i) => el("tr", { "data-run": runs[i].run_id },
      cells.map((c) => el("td", {}, c))))))));
}

async function sendNow(event, onSent) {
  event.preventDefault();
  const form = event.currentTarget;
  const result = document.getElementById("send-result");
  const to = form.elements.to.value.trim();
  const path = `/api/v1/reports/${quoted(current.name)}/send${to ? `?to=${encodeURIComponent(to)}` : ""}`;
  form.querySelector("button").disabled = true;
  result.replaceChildren(`Sending ${current.title}…`);
  try {
    const run = await postJSON(path, {});
    result.replaceChildren(`Run `, el("code", { "data-run-id": run.run_id }, run.run_id), ": ",
      runBadge(run.status), " ", ...channelBadges(run.deliveries), run.error ? ` ${run.error}` : "");
    await onSent();
  } catch (err) {
    result.textContent = `Not sent: ${err.message}`;
  } finally {
    form.querySelector("button").disabled = false;
  }
}

/** Show `report` (an entry of GET /api/v1/reports): its preview and its runs. */
export function select(report) {
  current = report;
  const detail = document.getElementById("report-detail");
  detail.hidden = false;
  detail.dataset.report = report.name;
  document.getElementById("report-detail-h").textContent = `Preview: ${report.title}`;
  document.getElementById("report-runs-card").hidden = false;
  const result = document.getElementById("send-result");
  if (result) result.textContent = "";
  showPreview();
  loadRuns().catch((err) => showError(`Runs: ${err.message}`));
}

export function setupDetail(onSent) {
  const frame = document.getElementById("preview-frame");
  frame.addEventListener("load", () => {
    if (!frame.getAttribute("src")) return;
    frame.dataset.loaded = String(Date.now());
    document.getElementById("preview-status").textContent =
      `${frame.dataset.shown}. A preview sends nothing.`;
  });
  document.getElementById("preview-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (current) showPreview();
    else showError("Choose a report's Preview first.");
  });
  document.getElementById("send-form")?.addEventListener("submit", (event) => sendNow(event, onSent));
}
