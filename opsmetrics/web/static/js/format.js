// Value formatting by KPI unit (value_format.js, shared with the report renderer) and the
// status badge that pages put in the DOM.
import { knownStatus, statusText } from "./value_format.js";

export {
  axisFormatter, formatChange, formatTime, formatValue, kpiStatusText, statusText,
} from "./value_format.js";

/** A status badge: colour AND words, never colour alone. */
export function statusBadge(status, text) {
  const el = document.createElement("span");
  const known = knownStatus(status);
  el.className = `status status-${known}`;
  el.textContent = statusText(known, text);
  return el;
}
