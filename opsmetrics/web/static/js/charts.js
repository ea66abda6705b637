// Apache ECharts (vendored, global `echarts`) in the page: theme-aware, colour-blind-safe
// options from chart_options.js (shared with the report renderer), drawn and redrawn here.
import * as options from "./chart_options.js";

const charts = new Map(); // element → {chart, build}

function css(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

export function colors() {
  const dark = css("color-scheme") === "dark";
  return {
    palette: dark ? options.PALETTE_DARK : options.PALETTE_LIGHT,
    text: css("--text"), muted: css("--muted"), border: css("--border"),
    ok: css("--ok"), warning: css("--warning"), critical: css("--critical"),
  };
}

// ECharts is a deferred classic script (base.html) that runs after the page's module: the
// module starts its API requests first, and draws wait for the library here.
let library = null;

/** Resolves once the ECharts script has run (or failed to load: then draws are skipped). */
export function ready() {
  if (!library) {
    library = typeof echarts !== "undefined" ? Promise.resolve() : new Promise((resolve) => {
      const script = document.getElementById("echarts-script");
      if (!script) { resolve(); return; }
      script.addEventListener("load", resolve, { once: true });
      script.addEventListener("error", resolve, { once: true });
    });
  }
  return library;
}

function watchSize(element, chart) {
  let width = element.clientWidth;
  let height = element.clientHeight;
  new ResizeObserver(() => {
    // The first call only reports the size the chart was drawn at: no second render.
    if (element.clientWidth === width && element.clientHeight === height) return;
    width = element.clientWidth;
    height = element.clientHeight;
    chart.resize();
  }).observe(element);
}

const reused = new WeakMap(); // new chart box → the drawn box that took its place

/**
 * Put the drawn chart box `old` (from a previous render) in place of the new, empty `box`, so
 * that drawing into `box` updates the existing chart (setOption) rather than making a new one.
 * False when `old` holds no chart.
 */
export function reuse(box, old) {
  if (!old || !charts.has(old) || old.className !== box.className) return false;
  for (const name of ["role", "aria-label"]) {
    if (box.hasAttribute(name)) old.setAttribute(name, box.getAttribute(name));
  }
  box.replaceWith(old);
  reused.set(box, old);
  return true;
}

/**
 * Draw `build()` (an option) into `element`; redrawn on resize and theme change. Before ECharts
 * has loaded the draw is queued (see `ready()`) and null returned.
 */
export function draw(target, build) {
  const element = reused.get(target) ?? target;
  if (!element) return null;
  if (typeof echarts === "undefined") {
    ready().then(() => typeof echarts !== "undefined" && element.isConnected && draw(element, build));
    return null;
  }
  let entry = charts.get(element);
  if (!entry) {
    const chart = echarts.init(element, null, { renderer: "canvas" });
    entry = { chart, build };
    charts.set(element, entry);
    watchSize(element, chart);
  }
  entry.build = build;
  entry.chart.setOption(build(), true);
  return entry.chart;
}

/** Forget charts whose elements are no longer in the page (after a re-render). */
export function sweep() {
  for (const [element, entry] of charts) {
    if (!element.isConnected) {
      entry.chart.dispose();
      charts.delete(element);
    }
  }
}

window.addEventListener("themechange", () => {
  for (const entry of charts.values()) entry.chart.setOption(entry.build(), true);
});

/** The trend_chart payload (also used by the KPI page) as an ECharts option. */
export function trendOption(payload, opts = {}) {
  return options.trendOption(payload, colors(), opts);
}

export const gaugeOption = (p) => options.gaugeOption(p, colors());
export const funnelOption = (p) => options.funnelOption(p, colors());
export const cohortOption = (p) => options.cohortOption(p, colors());
export const barOption = (p) => options.barOption(p, colors());
export const scatterOption = (p) => options.scatterOption(p, colors());
