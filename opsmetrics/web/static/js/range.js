// The time range: presets and custom, kept in the URL (?from=now-7d&to=now) and in links.
export const PRESETS = [
  ["1h", "Last 1 hour"], ["6h", "Last 6 hours"], ["24h", "Last 24 hours"],
  ["7d", "Last 7 days"], ["30d", "Last 30 days"], ["90d", "Last 90 days"],
];
const UNIT_MS = { s: 1000, m: 60000, h: 3600000, d: 86400000, w: 604800000 };
const RELATIVE = /^now(?:-(\d+)([smhdw]))?$/;

/** Milliseconds for "now", "now-7d", RFC 3339, or Unix seconds; null if unreadable. */
export function toMs(text, nowMs = Date.now()) {
  const raw = String(text ?? "").trim();
  const rel = RELATIVE.exec(raw);
  if (rel) return rel[1] ? nowMs - Number(rel[1]) * UNIT_MS[rel[2]] : nowMs;
  if (/^\d+(\.\d+)?$/.test(raw)) return Math.round(Number(raw) * 1000);
  const parsed = Date.parse(raw);
  return Number.isNaN(parsed) ? null : parsed;
}

/** "now-<seconds>" as the shortest duration text: 2592000 → "now-30d". */
export function relativeFor(seconds) {
  for (const [unit, ms] of [["d", 86400000], ["h", 3600000], ["m", 60000]]) {
    if ((seconds * 1000) % ms === 0) return `now-${(seconds * 1000) / ms}${unit}`;
  }
  return `now-${seconds}s`;
}

let defaultFrom = "now-24h";

export function setDefault(from) { defaultFrom = from; }

/** The current range: raw texts from the URL plus resolved milliseconds. */
export function currentRange() {
  const params = new URLSearchParams(window.location.search);
  const from = params.get("from") || defaultFrom;
  const to = params.get("to") || "now";
  const now = Date.now();
  let endMs = toMs(to, now) ?? now;
  let startMs = toMs(from, now) ?? endMs - 86400000;
  if (startMs >= endMs) startMs = endMs - 3600000;
  return { from, to, startMs, endMs, explicit: params.has("from") };
}

/** An internal link with the current range (and nothing else) carried over. */
export function withRange(href, params = new URLSearchParams(window.location.search)) {
  if (!params.has("from") && !params.has("to") && href.startsWith("/")) return href;
  const url = new URL(href, window.location.origin);
  for (const key of ["from", "to"]) {
    if (params.has(key)) url.searchParams.set(key, params.get(key));
  }
  return url.pathname + url.search + url.hash;
}

export function refreshLinks(root = document) {
  const params = new URLSearchParams(window.location.search);
  for (const a of root.querySelectorAll("a[data-keep-range]")) {
    const base = a.dataset.base || a.getAttribute("href");
    if (!a.dataset.base) a.dataset.base = base;
    const href = withRange(base, params);
    if (a.getAttribute("href") !== href) a.setAttribute("href", href);
  }
}

function setRange(from, to) {
  const url = new URL(window.location.href);
  url.searchParams.set("from", from);
  url.searchParams.set("to", to);
  window.history.pushState({}, "", url);
  refreshLinks();
  window.dispatchEvent(new CustomEvent("rangechange", { detail: currentRange() }));
}

function localInput(ms) {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
}

/** Draw the picker into `container`; changes fire a `rangechange` event on window. */
export function renderPicker(container) {
  if (!container) return;
  const range = currentRange();
  if (container.childElementCount) {
    // Already drawn: update in place so the focused button keeps the focus.
    for (const button of container.querySelectorAll("button[data-range]")) {
      button.setAttribute("aria-pressed", String(range.from === button.dataset.range && range.to === "now"));
    }
    const form = container.querySelector("form.range-custom");
    if (form) {
      form.elements.from.value = localInput(range.startMs);
      form.elements.to.value = localInput(range.endMs);
    }
    return;
  }
  for (const [key, label] of PRESETS) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = key;
    button.title = label;
    button.setAttribute("aria-label", label);
    button.dataset.range = `now-${key}`;
    button.setAttribute("aria-pressed", String(range.from === `now-${key}` && range.to === "now"));
    button.addEventListener("click", () => setRange(`now-${key}`, "now"));
    container.append(button);
  }
  container.append(customControls());
}

/** "Custom": a closed <details>; its form (date inputs are costly to make) on first opening. */
function customControls() {
  const details = document.createElement("details");
  details.className = "range-custom-wrap";
  const summary = document.createElement("summary");
  summary.textContent = "Custom";
  details.append(summary);
  details.addEventListener("toggle", () => {
    if (details.open && !details.querySelector("form")) details.append(customForm(currentRange()));
  });
  return details;
}

function customForm(range) {
  const form = document.createElement("form");
  form.className = "range-custom";
  form.innerHTML = `
    <label>From <input type="datetime-local" name="from" required></label>
    <label>To <input type="datetime-local" name="to" required></label>
    <button type="submit">Apply</button>`;
  form.elements.from.value = localInput(range.startMs);
  form.elements.to.value = localInput(range.endMs);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const from = new Date(form.elements.from.value).toISOString();
    const to = new Date(form.elements.to.value).toISOString();
    setRange(from, to);
  });
  return form;
}

window.addEventListener("popstate", () => {
  refreshLinks();
  window.dispatchEvent(new CustomEvent("rangechange", { detail: currentRange() }));
});
window.addEventListener("rangechange", () => renderPicker(document.getElementById("range-picker")));

/** A step (ms) giving about `points` points over the range, rounded to a sensible unit. */
export function stepFor(range, points = 240) {
  const raw = Math.max(15000, (range.endMs - range.startMs) / points);
  const nice = [15e3, 30e3, 60e3, 300e3, 900e3, 1800e3, 3600e3, 10800e3, 21600e3, 86400e3];
  return nice.find((s) => s >= raw) ?? raw;
}

const GRAIN_MS = { hour: 3600e3, day: 86400e3, week: 604800e3, month: 2592000e3, quarter: 7776000e3, year: 31536000e3 };

/** The KPI's grain, or a finer one when the range would hold fewer than 3 of its periods. */
export function grainFor(kpiGrain, range) {
  const span = range.endMs - range.startMs;
  if (span / (GRAIN_MS[kpiGrain] ?? GRAIN_MS.day) >= 3) return undefined;
  return span <= 7 * GRAIN_MS.day ? "hour" : "day";
}
