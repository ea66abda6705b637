// What the /reports page shows of a run or a slot: times in the report's own time zone, and
// statuses as badges with words (never colour alone).
import { el } from "../common.js";
import { statusBadge } from "../format.js";

const RUN = { sent: ["ok", "Sent"], failed: ["critical", "Failed"], running: ["warning", "Running"] };
const CHANNEL = {
  sent: ["ok", "sent"], failed: ["critical", "failed"], pending: ["warning", "pending"],
  skipped: ["unknown", "skipped"],
};

/** "Mon 7 Dec, 08:00" for `ms` in the IANA zone `timeZone`. */
export function when(ms, timeZone) {
  if (ms == null) return "–";
  return new Intl.DateTimeFormat(undefined, {
    timeZone, weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit",
    hourCycle: "h23",
  }).format(new Date(ms)).replace(/\s/g, "\u00a0");
}

export function runBadge(status) {
  const [kind, words] = RUN[status] ?? ["unknown", status === "never run" ? "Never run" : status];
  const badge = statusBadge(kind, words);
  badge.dataset.status = status;
  return badge;
}

/** One badge per channel ("slack: skipped"); its title is the last error, if any. */
export function channelBadges(deliveries) {
  if (!deliveries || !deliveries.length) return [el("span", { class: "muted" }, "–")];
  return deliveries.map((d, i) => {
    const [kind, words] = CHANNEL[d.status] ?? ["unknown", d.status];
    const badge = statusBadge(kind, `${d.channel}: ${words}`);
    badge.dataset.channel = d.channel;
    if (d.error) badge.title = d.error;
    return [i ? " " : "", badge];
  }).flat();
}

/** The slot of a run in the report's zone, its trigger and whether it ran late. */
export function runWhen(run, timeZone) {
  const parts = [when(run.slot_ms, timeZone)];
  if (run.trigger === "manual") parts.push("(sent by hand)");
  if (run.delayed) parts.push("(delayed)");
  return parts.join(" ");
}
