// /dashboards/{name}: the definition once, then the widgets' data for the chosen range.
import { getJSON } from "../api.js";
import * as charts from "../charts.js";
import { el, setupRefresh, showError } from "../common.js";
import { currentRange, refreshLinks, relativeFor, renderPicker, setDefault } from "../range.js";
import { renderWidget } from "../widgets.js";

const root = document.getElementById("dashboard");
const name = root.dataset.dashboard;
const path = `/api/v1/dashboards/${encodeURIComponent(name)}`;
let definition = null;
let loading = false;

function layout(def, data) {
  const widgets = data?.widgets || {};
  const parts = [];
  const drawers = [];
  def.sections.forEach((section, i) => {
    if (section.title) parts.push(el("h2", { class: "section-title", id: `section-${i}` }, section.title));
    const grid = el("div", { class: "grid" });
    for (const w of section.widgets) {
      const { card, draw } = renderWidget(w, widgets[w.id]);
      grid.append(card);
      drawers.push(draw);
    }
    parts.push(grid);
  });
  root.replaceChildren(...parts);
  root.dataset.start = String(data?.range?.start ?? "");
  root.dataset.end = String(data?.range?.end ?? "");
  for (const draw of drawers) draw();
  charts.sweep();
  refreshLinks(root);
}

async function load() {
  if (loading) return;
  loading = true;
  root.setAttribute("aria-busy", "true");
  try {
    const range = currentRange();
    const data = await getJSON(`${path}/data`, { start: range.from, end: range.to });
    showError("");
    layout(definition, data);
    document.body.dataset.loaded = String(Date.now());
  } catch (err) {
    showError(err.message);
  } finally {
    loading = false;
    root.removeAttribute("aria-busy");
  }
}

async function start() {
  try {
    definition = await getJSON(path);
  } catch (err) {
    root.replaceChildren();
    showError(err.message);
    return;
  }
  document.getElementById("dashboard-title").textContent = definition.title || name;
  document.title = `${definition.title || name} · opsmetrics`;
  document.getElementById("dashboard-description").textContent = definition.description || "";
  if (definition.time_range) setDefault(relativeFor(definition.time_range));
  renderPicker(document.getElementById("range-picker"));
  setupRefresh(definition.refresh || 0, load);
  window.addEventListener("rangechange", load);
  await load();
}

start();
