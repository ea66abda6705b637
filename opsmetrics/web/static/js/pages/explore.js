// /explore: a PromQL expression as a chart (query_range) and a table (instant query).
import { getJSON } from "../api.js";
import * as charts from "../charts.js";
import { el, showError } from "../common.js";
import { currentRange, stepFor } from "../range.js";
import { table } from "../widgets.js";

const form = document.getElementById("explore-form");
const input = document.getElementById("promql");
const chartBox = document.getElementById("explore-chart");
const tableBox = document.getElementById("explore-table");

function seriesName(metric) {
  const name = metric.__name__ ?? "";
  const labels = Object.entries(metric).filter(([k]) => k !== "__name__").map(([k, v]) => `${k}="${v}"`);
  return labels.length ? `${name}{${labels.join(", ")}}` : name || "{}";
}

function matrixPayload(result) {
  return { unit: null, series: result.map((r) => ({
    name: seriesName(r.metric), label: seriesName(r.metric),
    points: r.values.map(([t, v]) => [t * 1000, Number(v)]),
  })) };
}

function instantTable(data) {
  if (data.resultType === "scalar" || data.resultType === "string") {
    return table(["Value"], [[data.result[1]]]);
  }
  return table(["Series", "Value"], data.result.map((r) => [seriesName(r.metric), (r.value || r.values?.at(-1) || [])[1]]));
}

async function run() {
  const query = input.value.trim();
  const url = new URL(window.location.href);
  url.searchParams.set("query", query);
  window.history.replaceState({}, "", url);
  if (!query) return;
  const range = currentRange();
  const stepInput = document.getElementById("step").value.trim();
  const step = stepInput || `${Math.round(stepFor(range) / 1000)}s`;
  const results = await Promise.allSettled([
    getJSON("/api/v1/query_range", { query, start: range.startMs / 1000, end: range.endMs / 1000, step }),
    getJSON("/api/v1/query", { query, time: range.endMs / 1000 }),
  ]);
  const failed = results.find((r) => r.status === "rejected");
  showError(failed ? failed.reason.message : "", "query-error");
  if (results[0].status === "fulfilled") {
    const data = results[0].value;
    const payload = data.resultType === "matrix" ? matrixPayload(data.result) : { series: [] };
    charts.draw(chartBox, () => charts.trendOption(payload));
  }
  tableBox.replaceChildren(results[1].status === "fulfilled"
    ? instantTable(results[1].value) : el("p", { class: "muted" }, "No result."));
  markLoaded();
}

/** body[data-loaded] once the (deferred) chart library has run and queued draws are done. */
function markLoaded() {
  charts.ready().then(() => { document.body.dataset.loaded = String(Date.now()); });
}

form.addEventListener("submit", (event) => { event.preventDefault(); run(); });
input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); run(); }
});
window.addEventListener("rangechange", run);
const initial = new URLSearchParams(window.location.search).get("query");
if (initial) { input.value = initial; run(); } else { markLoaded(); }
