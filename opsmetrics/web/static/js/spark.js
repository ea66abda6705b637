// Sparklines as a small inline SVG (no chart library): the line with a light area under it,
// gaps where values are missing, a dot for a value with no neighbour, the theme's colours from
// CSS variables, and a readout of the nearest point under the pointer.
import { formatTime, formatValue } from "./format.js";

const SVG = "http://www.w3.org/2000/svg";
const W = 1000; // viewBox units across; the SVG stretches to its box (preserveAspectRatio none)
const H = 100;
const PAD = 6; // vertical room so the line's stroke is not clipped at the extremes

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

function extent(values) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (lo === hi) return { lo: lo - 1, hi: hi + 1 }; // a flat line sits in the middle
  return { lo, hi };
}

/** Runs of consecutive points that have a value, as [[x, y], …] in viewBox units. */
function runs(points) {
  const xs = points.map((p) => p[0]);
  const values = points.map((p) => p[1]).filter((v) => v != null && Number.isFinite(v));
  const x0 = Math.min(...xs);
  const dx = Math.max(...xs) - x0 || 1;
  const { lo, hi } = extent(values);
  const out = [];
  let run = null;
  for (const [t, v] of points) {
    if (v == null || !Number.isFinite(v)) { run = null; continue; }
    if (!run) { run = []; out.push(run); }
    const x = points.length === 1 ? W / 2 : ((t - x0) / dx) * W;
    run.push([round(x), round(H - PAD - ((v - lo) / (hi - lo)) * (H - 2 * PAD))]);
  }
  return out;
}

function round(n) {
  return Math.round(n * 10) / 10;
}

function lineData(run) {
  if (run.length === 1) return `M${run[0][0]} ${run[0][1]}h0`; // a dot (round cap)
  return run.map(([x, y], i) => `${i ? "L" : "M"}${x} ${y}`).join("");
}

function areaData(run) {
  if (run.length < 2) return "";
  const first = run[0][0];
  const last = run[run.length - 1][0];
  return `${lineData(run)}L${last} ${H}L${first} ${H}Z`;
}

/** Words for a screen reader: where the values went over the range. */
export function describe(title, points, unit, opts = {}) {
  const values = points.filter((p) => p[1] != null && Number.isFinite(p[1]));
  if (!values.length) return `${title}: no values in this range`;
  if (values.length === 1) return `${title} trend: a single value, ${formatValue(values[0][1], unit, opts)}`;
  const first = values[0][1];
  const last = values[values.length - 1][1];
  const way = last > first ? "rising" : last < first ? "falling" : "flat";
  const from = formatValue(first, unit, opts);
  const to = formatValue(last, unit, opts);
  return `${title} trend: ${way}, from ${from} to ${to} (${values.length} points)`;
}

function readout(box, points, unit, opts) {
  const marker = document.createElement("div");
  marker.className = "spark-marker";
  const tip = document.createElement("div");
  tip.className = "spark-tip";
  marker.hidden = tip.hidden = true;
  box.append(marker, tip);
  const valued = points.filter((p) => p[1] != null && Number.isFinite(p[1]));
  const x0 = points[0][0];
  const dx = points[points.length - 1][0] - x0 || 1;
  const { lo, hi } = extent(valued.map((p) => p[1]));
  box.addEventListener("pointermove", (event) => {
    const rect = box.getBoundingClientRect();
    const t = x0 + ((event.clientX - rect.left) / (rect.width || 1)) * dx;
    let best = valued[0];
    for (const p of valued) if (Math.abs(p[0] - t) < Math.abs(best[0] - t)) best = p;
    const left = points.length === 1 ? 50 : ((best[0] - x0) / dx) * 100;
    const top = ((H - PAD - ((best[1] - lo) / (hi - lo)) * (H - 2 * PAD)) / H) * 100;
    marker.style.left = tip.style.left = `${left}%`;
    marker.style.top = `${top}%`;
    tip.textContent = `${formatTime(best[0])}: ${formatValue(best[1], unit, opts)}`;
    tip.style.transform = `translateX(-${left}%)`; // slides along: stays inside the box
    marker.hidden = tip.hidden = false;
  });
  box.addEventListener("pointerleave", () => { marker.hidden = tip.hidden = true; });
}

/**
 * Draw `points` ([[ms, value|null], …], in time order) into `box` (an element with a size) as
 * an SVG sparkline; `label` names it for screen readers. Returns the SVG element.
 */
export function sparkline(box, points, { title = "", unit, opts = {} } = {}) {
  const list = points || [];
  box.setAttribute("role", "img");
  box.setAttribute("aria-label", describe(title, list, unit, opts));
  const root = svg("svg", {
    class: "spark-svg", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none",
    "aria-hidden": "true", focusable: "false",
  });
  for (const run of runs(list)) {
    const area = areaData(run);
    if (area) root.append(svg("path", { class: "spark-area", d: area }));
    root.append(svg("path", {
      class: run.length === 1 ? "spark-line spark-dot" : "spark-line", d: lineData(run), "vector-effect": "non-scaling-stroke",
      "data-points": String(run.length),
    }));
  }
  box.replaceChildren(root);
  if (list.some((p) => p[1] != null)) readout(box, list, unit, opts);
  return root;
}
