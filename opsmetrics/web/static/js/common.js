// Shared by every page: theme toggle, range picker, auto-refresh, links that keep the range.
import { refreshLinks, renderPicker } from "./range.js";

const THEME_KEY = "opsmetrics-theme";

export function currentTheme() {
  const set = document.documentElement.dataset.theme;
  if (set === "dark" || set === "light") return set;
  return window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

function setupTheme() {
  const button = document.getElementById("theme-toggle");
  if (!button) return;
  const label = () => {
    const dark = currentTheme() === "dark";
    button.textContent = dark ? "Light theme" : "Dark theme";
    button.setAttribute("aria-pressed", String(dark));
  };
  button.addEventListener("click", () => {
    const next = currentTheme() === "dark" ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    try { localStorage.setItem(THEME_KEY, next); } catch { /* storage blocked */ }
    label();
    window.dispatchEvent(new CustomEvent("themechange", { detail: next }));
  });
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
    label();
    window.dispatchEvent(new CustomEvent("themechange", { detail: currentTheme() }));
  });
  label();
}

const REFRESH_CHOICES = [[0, "Off"], [30, "30s"], [60, "1m"], [300, "5m"], [900, "15m"]];

/** Auto-refresh control; calls `onTick` every chosen interval (default `seconds`, 0 = off). */
export function setupRefresh(seconds, onTick) {
  const box = document.getElementById("refresh-control");
  if (!box) return;
  const choices = [...REFRESH_CHOICES];
  if (seconds && !choices.some(([s]) => s === seconds)) choices.push([seconds, `${seconds}s`]);
  box.innerHTML = '<label for="refresh-select">Auto-refresh</label>';
  const select = document.createElement("select");
  select.id = "refresh-select";
  for (const [value, label] of choices) select.add(new Option(label, String(value)));
  select.value = String(seconds || 0);
  let timer = null;
  const arm = () => {
    if (timer) clearInterval(timer);
    const every = Number(select.value);
    timer = every > 0 ? setInterval(() => { if (!document.hidden) onTick(); }, every * 1000) : null;
  };
  select.addEventListener("change", arm);
  box.append(select);
  arm();
}

export function showError(message, id = "page-error") {
  const box = document.getElementById(id);
  if (!box) return;
  box.textContent = message || "";
  box.hidden = !message;
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

setupTheme();
renderPicker(document.getElementById("range-picker"));
refreshLinks();
