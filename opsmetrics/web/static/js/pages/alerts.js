// /alerts: firing, pending, acknowledged and silenced alerts; Ack buttons; silences.
import { getJSON, postJSON } from "../api.js";
import { el, setupRefresh, showError } from "../common.js";
import { formatTime } from "../format.js";
import { openTimeline } from "./alert_timeline.js";

const groupsBox = document.getElementById("alert-groups");
const form = document.getElementById("silence-form");
const matchersBox = document.getElementById("matchers");
const GROUPS = [
  ["firing", "Firing"], ["pending", "Pending"], ["acknowledged", "Acknowledged"], ["silenced", "Silenced"],
];
const SEVERITY = { critical: "critical", warning: "warning", info: "ok" };

function groupOf(alert) {
  const s = alert.status || {};
  if ((s.silencedBy || []).length || (s.inhibitedBy || []).length) return "silenced";
  if (s.acknowledged) return "acknowledged";
  return alert.state === "pending" ? "pending" : "firing";
}

function labelText(labels) {
  return Object.entries(labels || {}).filter(([k]) => k !== "alertname")
    .map(([k, v]) => `${k}="${v}"`).join(", ");
}

function actions(alert, group) {
  const box = el("div", { class: "matcher-row" });
  if (alert.fingerprint && group !== "acknowledged" && group !== "silenced") {
    const ack = el("button", { type: "button", class: "btn", "data-ack": alert.fingerprint,
      "aria-label": `Acknowledge ${alert.labels?.alertname}` }, "Ack");
    ack.addEventListener("click", () => acknowledge(alert, ack));
    box.append(ack);
  }
  const silence = el("button", { type: "button", class: "btn btn-ghost",
    "aria-label": `Silence ${alert.labels?.alertname}` }, "Silence…");
  silence.addEventListener("click", () => prefill(alert.labels || {}));
  box.append(silence);
  if (alert.fingerprint && alert.state === "firing") {
    const timeline = el("button", { type: "button", class: "btn btn-ghost", "data-timeline": alert.fingerprint,
      "aria-label": `Timeline of ${alert.labels?.alertname}` }, "Timeline");
    timeline.addEventListener("click", () => openTimeline(alert));
    box.append(timeline);
  }
  return box;
}

async function acknowledge(alert, button) {
  button.disabled = true;
  try {
    await postJSON(`/api/v1/alerts/${encodeURIComponent(alert.fingerprint)}/ack`, { by: "ui" });
    showError("");
    await load();
  } catch (err) {
    showError(`Could not acknowledge ${alert.labels?.alertname}: ${err.message}`);
    button.disabled = false;
  }
}

function row(alert, group) {
  const sev = alert.labels?.severity;
  const s = alert.status || {};
  const note = group === "silenced" ? `silenced by ${[...(s.silencedBy || []), ...(s.inhibitedBy || [])].join(", ")}`
    : group === "acknowledged" && s.acknowledgedBy ? `by ${s.acknowledgedBy}` : "";
  return el("tr", { "data-fingerprint": alert.fingerprint ?? "", "data-group": group },
    el("td", {}, el("strong", {}, alert.labels?.alertname ?? "–")),
    el("td", {}, sev ? el("span", { class: `status status-${SEVERITY[sev] || "unknown"}` }, sev) : "–"),
    el("td", {}, alert.state, note ? el("div", { class: "muted" }, note) : null),
    el("td", {}, alert.annotations?.summary ?? "", el("div", { class: "muted" }, labelText(alert.labels))),
    el("td", {}, formatTime(Date.parse(alert.activeAt))),
    el("td", { class: "num" }, alert.value ?? "–"),
    el("td", {}, actions(alert, group)));
}

function render(alerts) {
  const by = new Map(GROUPS.map(([k]) => [k, []]));
  for (const a of alerts) by.get(groupOf(a)).push(a);
  groupsBox.replaceChildren(...GROUPS.map(([key, label]) => {
    const list = by.get(key);
    const body = list.length
      ? el("div", { class: "table-wrap" }, el("table", {},
        el("thead", {}, el("tr", {}, ["Alert", "Severity", "State", "Summary and labels", "Active since", "Value", "Actions"]
          .map((c) => el("th", { scope: "col" }, c)))),
        el("tbody", {}, list.map((a) => row(a, key)))))
      : el("p", { class: "muted" }, `No ${label.toLowerCase()} alerts.`);
    return el("section", { class: "card", "data-group": key, "aria-label": `${label} alerts` },
      el("h2", { class: "card-title" }, `${label} (${list.length})`), body);
  }));
}

function matcherRow(name = "", value = "") {
  const remove = el("button", { type: "button", class: "btn btn-ghost", "aria-label": "Remove matcher" }, "Remove");
  const line = el("div", { class: "matcher-row" },
    el("label", {}, "Label ", el("input", { name: "m-name", value: name, required: true, size: 14 })),
    el("label", {}, "Operator ", (() => {
      const s = el("select", { name: "m-op" });
      for (const op of ["=", "!=", "=~", "!~"]) s.add(new Option(op, op));
      return s;
    })()),
    el("label", {}, "Value ", el("input", { name: "m-value", value, required: true, size: 18 })),
    remove);
  remove.addEventListener("click", () => line.remove());
  matchersBox.append(line);
}

function prefill(labels) {
  matchersBox.replaceChildren();
  const keys = ["alertname", ...Object.keys(labels).filter((k) => k !== "alertname")];
  for (const k of keys) if (labels[k] !== undefined) matcherRow(k, labels[k]);
  form.scrollIntoView({ block: "start" });
  matchersBox.querySelector("input")?.focus();
}

async function submitSilence(event) {
  event.preventDefault();
  const result = document.getElementById("silence-result");
  const matchers = [...matchersBox.querySelectorAll(".matcher-row")].map((line) => {
    const op = line.querySelector("[name=m-op]").value;
    return { name: line.querySelector("[name=m-name]").value.trim(),
      value: line.querySelector("[name=m-value]").value,
      isRegex: op.includes("~"), isEqual: !op.startsWith("!") };
  });
  const now = Date.now();
  const body = { matchers, startsAt: new Date(now).toISOString(),
    endsAt: new Date(now + Number(form.elements.duration.value) * 1000).toISOString(),
    createdBy: form.elements.createdBy.value.trim(), comment: form.elements.comment.value.trim() };
  try {
    const answer = await postJSON("/api/v1/silences", body);
    result.textContent = `Silence ${answer?.silenceID ?? ""} created.`;
    await load();
  } catch (err) {
    result.textContent = `Could not create the silence: ${err.message}`;
  }
}

function silenceList(silences) {
  const active = silences.filter((s) => s.status?.state !== "expired");
  const box = document.getElementById("silence-list");
  if (!active.length) {
    box.replaceChildren(el("p", { class: "muted" }, "No active or pending silences."));
    return;
  }
  const ops = (m) => (m.isEqual === false ? "!" : "=") + (m.isRegex ? "~" : "");
  box.replaceChildren(el("div", { class: "table-wrap" }, el("table", {},
    el("thead", {}, el("tr", {}, ["Matchers", "State", "Ends", "Created by", "Comment"].map((c) => el("th", { scope: "col" }, c)))),
    el("tbody", {}, active.map((s) => el("tr", {},
      el("td", {}, el("code", {}, s.matchers.map((m) => `${m.name}${ops(m)}"${m.value}"`).join(", "))),
      el("td", {}, s.status?.state ?? "–"), el("td", {}, formatTime(Date.parse(s.endsAt))),
      el("td", {}, s.createdBy ?? ""), el("td", {}, s.comment ?? "")))))));
}

async function load() {
  const [alerts, silences] = await Promise.allSettled([getJSON("/api/v1/alerts"), getJSON("/api/v1/silences")]);
  const errors = [];
  if (alerts.status === "fulfilled") render(alerts.value.alerts || alerts.value || []);
  else errors.push(`Alerts: ${alerts.reason.message}`);
  if (silences.status === "fulfilled") silenceList(Array.isArray(silences.value) ? silences.value : []);
  else errors.push(`Silences: ${silences.reason.message}`);
  showError(errors.join("\n"));
  document.body.dataset.loaded = String(Date.now());
}

document.getElementById("add-matcher").addEventListener("click", () => matcherRow());
form.addEventListener("submit", submitSilence);
matcherRow("alertname", "");
setupRefresh(30, load);
load();
