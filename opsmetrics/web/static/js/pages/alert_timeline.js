// The incident timeline panel of /alerts: the protocol's checklist (mark a step done), its
// actions (run one), and every entry of the alert's firings (docs/alerting.md).
import { getJSON, postJSON } from "../api.js";
import { el, showError } from "../common.js";
import { formatTime } from "../format.js";

const panel = document.getElementById("timeline-panel");
const box = document.getElementById("timeline");
const title = document.getElementById("timeline-h");
let shown = null;

function who() {
  return document.getElementById("timeline-by").value.trim();
}

function describe(e) {
  const d = e.detail || {};
  switch (e.kind) {
    case "fired": return `${d.alertname} (${d.severity || "no severity"}) value ${d.value}${d.protocol ? `, protocol ${d.protocol}` : ""}`;
    case "notified": case "escalated": return `${d.kind} via ${e.by}: ${d.status}${d.httpStatus ? ` (HTTP ${d.httpStatus})` : ""}`;
    case "acknowledged": return d.comment || "acknowledged";
    case "step": return `step ${d.step}: ${d.title}${d.note ? ` — ${d.note}` : ""}`;
    case "action": return `${d.action} ${d.status}${d.response?.status ? ` (HTTP ${d.response.status})` : ""}${d.status === "failed" && d.response?.body ? `: ${d.response.body}` : ""}`;
    default: return "";
  }
}

async function post(path, what) {
  const by = who();
  if (!by) {
    showError("Say who you are (the “You” field of the timeline) before marking steps or running actions.");
    return;
  }
  try {
    await postJSON(path, { by, note: document.getElementById("timeline-note").value.trim() });
    showError("");
  } catch (err) {
    showError(`Could not ${what}: ${err.message}`);
  }
  await openTimeline(shown);
}

function checklist(fp, protocol) {
  const steps = el("ol", { class: "checklist" }, protocol.steps.map((s) => el("li", { "data-step": String(s.n) },
    s.title,
    s.link ? el("span", {}, " ", el("a", { href: s.link }, "open")) : null,
    s.query ? el("span", {}, " ", el("a", { href: `/explore?query=${encodeURIComponent(s.query)}` }, el("code", {}, s.query))) : null,
    s.done ? el("span", { class: "muted" }, ` — done by ${s.done.by}, ${formatTime(Date.parse(s.done.at))}`)
      : (() => {
        const b = el("button", { type: "button", class: "btn btn-ghost", "aria-label": `Mark step ${s.n} done` }, "Done");
        b.addEventListener("click", () => post(`/api/v1/alerts/${fp}/steps/${s.n}`, `mark step ${s.n} done`));
        return el("span", {}, " ", b);
      })())));
  const actions = el("div", { class: "matcher-row" }, protocol.actions.map((a) => {
    const b = el("button", { type: "button", class: "btn", "data-action": a.name }, `Run ${a.name}${a.run === "auto" ? " (auto)" : ""}`);
    b.addEventListener("click", () => post(`/api/v1/alerts/${fp}/actions/${encodeURIComponent(a.name)}`, `run ${a.name}`));
    return b;
  }));
  const times = Object.entries(protocol.responseTimeSeconds || {}).map(([k, v]) => `${k} ${v / 60} min`).join(", ");
  return el("div", {},
    el("p", {}, el("strong", {}, protocol.title), ` — team ${protocol.team}${protocol.role ? ` (${protocol.role})` : ""}`,
      times ? el("span", { class: "muted" }, `; respond within ${times}`) : null),
    steps, protocol.actions.length ? actions : null);
}

function instance(fp, inst) {
  const rows = inst.entries.map((e) => el("tr", { "data-kind": e.kind },
    el("td", {}, formatTime(Date.parse(e.at))), el("td", {}, e.kind), el("td", {}, e.by), el("td", {}, describe(e))));
  return el("section", { "aria-label": `Firing since ${inst.startedAt}` },
    el("h3", {}, `Firing since ${formatTime(Date.parse(inst.startedAt))}`),
    inst.protocol ? checklist(fp, inst.protocol) : el("p", { class: "muted" }, "No response protocol covers this alert."),
    el("div", { class: "table-wrap" }, el("table", {},
      el("thead", {}, el("tr", {}, ["At", "What", "By", "Detail"].map((c) => el("th", { scope: "col" }, c)))),
      el("tbody", {}, rows))));
}

export async function openTimeline(alert) {
  shown = alert;
  panel.hidden = false;
  title.textContent = `Timeline: ${alert.labels?.alertname ?? alert.fingerprint}`;
  const fp = encodeURIComponent(alert.fingerprint);
  try {
    const data = await getJSON(`/api/v1/alerts/${fp}/timeline`);
    box.replaceChildren(...data.instances.map((inst) => instance(fp, inst)));
  } catch (err) {
    box.replaceChildren(el("p", { class: "muted" }, `No timeline yet: ${err.message}`));
  }
  panel.dataset.loaded = String(Date.now());
}
