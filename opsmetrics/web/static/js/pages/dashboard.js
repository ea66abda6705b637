// /dashboards/{name}: the definition comes with the page (embedded JSON), so the widgets' data
// is requested as soon as this module runs, before the chart library has been evaluated.
import { apiURL, getJSON, readJSON } from "../api.js";
import * as charts from "../charts.js";
import { el, setupRefresh, showError } from "../common.js";
import { currentRange, refreshLinks, relativeFor, renderPicker, setDefault } from "../range.js";
import { renderWidget } from "../widgets.js";

const root = document.getElementById("dashboard");
const name = root.dataset.dashboard;
const path = `/api/v1/dashboards/${encodeURIComponent(name)}`;
let loading = false;

function fetchData() {
  const range = currentRange();
  const params = { start: range.from, end: range.to };
  // The page itself asked for the data while the modules loaded (dashboard.html): use that
  // answer once, when it is for the same range.
  const early = window.opsmetricsPrefetch;
  window.opsmetricsPrefetch = null;
  if (early && early.url === apiURL(`${path}/data`, params).href) return readJSON(early.response);
  return getJSON(`${path}/data`, params);
}

/** Keep the drawn charts of a widget's previous card: a refresh then updates them in place. */
function keepCharts(previous, card) {
  if (!previous) return;
  const old = previous.querySelectorAll(".chart");
  const boxes = card.querySelectorAll(".chart");
  if (old.length !== boxes.length) return;
  boxes.forEach((box, i) => charts.reuse(box, old[i]));
}

function layout(def, data) {
  const widgets = data?.widgets || {};
  const previous = new Map([...root.querySelectorAll(".widget")].map((c) => [c.dataset.widget, c]));
  const parts = [];
  const drawers = [];
  def.sections.forEach((section, i) => {
    if (section.title) parts.push(el("h2", { class: "section-title", id: `section-${i}` }, section.title));
    const grid = el("div", { class: "grid" });
    for (const w of section.widgets) {
      const { card, draw } = renderWidget(w, widgets[w.id]);
      keepCharts(previous.get(w.id), card);
      grid.append(card);
      drawers.push(draw);
    }
    parts.push(grid);
  });
  root.replaceChildren(...parts);
  root.dataset.start = String(data?.range?.start ?? "");
  root.dataset.end = String(data?.range?.end ?? "");
  refreshLinks(root);
  for (const draw of drawers) draw();
  charts.sweep();
}

/** Show `pending` (the data request) once it answers; body[data-loaded] when all is drawn. */
async function show(definition, pending) {
  if (loading) return;
  loading = true;
  root.setAttribute("aria-busy", "true");
  try {
    const data = await pending;
    showError("");
    layout(definition, data);
    await charts.ready(); // the queued chart draws run first
    document.body.dataset.loaded = String(Date.now());
  } catch (err) {
    showError(err.message);
  } finally {
    loading = false;
    root.removeAttribute("aria-busy");
  }
}

async function start() {
  // The server renders the title and embeds the definition (GET /api/v1/dashboards/{name}).
  const definition = JSON.parse(document.getElementById("dashboard-definition").textContent);
  if (definition.time_range) setDefault(relativeFor(definition.time_range));
  const pending = fetchData();
  pending.catch(() => {}); // handled in show(); no unhandled rejection meanwhile
  renderPicker(document.getElementById("range-picker"));
  const reload = () => { if (!loading) show(definition, fetchData()); };
  setupRefresh(definition.refresh || 0, reload);
  window.addEventListener("rangechange", reload);
  await show(definition, pending);
}

start();
