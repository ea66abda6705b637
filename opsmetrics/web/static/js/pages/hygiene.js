// /hygiene: the hygiene findings with their fixes (GET /api/v1/hygiene), the owners' review
// list (GET /api/v1/reviews) and the week's alert counts.
import { getJSON } from "../api.js";
import { el, setupRefresh, showError } from "../common.js";
import { table } from "../widgets.js";

const AREA = { alert: "Alert", kpi: "KPI", source: "Source" };
const secs = (s) => (s == null ? "–" : s >= 3600 ? `${(s / 3600).toFixed(1)} h` : `${Math.round(s / 60)} min`);

function findings(h) {
  const box = document.getElementById("hygiene-findings");
  if (!h.findings.length) {
    box.replaceChildren(el("p", { class: "muted" }, "Nothing to clean up."));
    return;
  }
  box.replaceChildren(el("div", { class: "table-wrap" }, el("table", {},
    el("thead", {}, el("tr", {}, ["Area", "Item", "Finding", "Fix"].map((c) => el("th", { scope: "col" }, c)))),
    el("tbody", {}, h.findings.map((f) => el("tr", { "data-kind": f.kind, "data-subject": f.subject },
      el("td", {}, AREA[f.area] ?? f.area), el("td", {}, el("code", {}, f.subject)),
      el("td", {}, f.detail), el("td", { class: "fix" }, f.fix)))))));
}

function alerts(h) {
  const rows = h.alerts.map((a) => [a.alertname, a.fires, a.flaps, a.acknowledged,
    secs(a.median_ack_seconds), a.never_acknowledged, a.resolved_unseen]);
  document.getElementById("hygiene-alerts").replaceChildren(rows.length
    ? table(["Alert", "Fired", "Flapped", "Acknowledged", "Median to ack", "Never acknowledged", "Resolved unseen"], rows)
    : el("p", { class: "muted" }, "No alert fired this week."));
}

function reviews(list) {
  const box = document.getElementById("hygiene-reviews");
  if (!list.owners.length) {
    box.replaceChildren(el("p", { class: "muted" }, "Every KPI was reviewed within its cadence and is on target."));
    return;
  }
  box.replaceChildren(...list.owners.map((g) => el("section", { "data-owner": g.owner },
    el("h3", { class: "card-title" }, g.owner),
    table(["KPI", "Review", "Last review", "Flags"], g.kpis.map((k) => [k.title || k.kpi, k.standing,
      k.last_review ? `${k.last_review.reviewed.slice(0, 10)} by ${k.last_review.author}` : "never",
      k.flags.join(", ")]), g.kpis.map((k) => `/kpis/${encodeURIComponent(k.kpi)}`)))));
}

async function load() {
  const [h, list] = await Promise.allSettled([getJSON("/api/v1/hygiene"), getJSON("/api/v1/reviews")]);
  const errors = [];
  if (h.status === "fulfilled") { findings(h.value); alerts(h.value); } else errors.push(`Hygiene: ${h.reason.message}`);
  if (list.status === "fulfilled") reviews(list.value); else errors.push(`Reviews: ${list.reason.message}`);
  showError(errors.join("\n"));
  document.body.dataset.loaded = String(Date.now());
}

setupRefresh(300, load);
load();
