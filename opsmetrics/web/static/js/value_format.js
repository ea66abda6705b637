// Value formatting by KPI unit, with no DOM: the pages (through format.js) and the report
// renderer (opsmetrics/reports/charts_ssr.py, in QuickJS) both load this file.
const STATUS_TEXT = { ok: "On target", warning: "Warning", critical: "Critical", unknown: "No data" };
const COMPACT = [[1e12, "T"], [1e9, "B"], [1e6, "M"], [1e3, "K"]];

// Making an Intl formatter costs far more than using one: one per set of options, kept.
const formatters = new Map();

function grouped(value, digits, least) {
  const fixed = Math.abs(value).toFixed(digits);
  let [whole, part = ""] = fixed.split(".");
  while (part.length > least && part.endsWith("0")) part = part.slice(0, -1);
  whole = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return `${value < 0 && Number(fixed) !== 0 ? "-" : ""}${whole}${part ? `.${part}` : ""}`;
}

function significant(value, digits) {
  if (value === 0) return 0;
  const scale = 10 ** (digits - 1 - Math.floor(Math.log10(Math.abs(value))));
  return Math.round(value * scale) / scale;
}

/** Intl.NumberFormat's options that this file uses, where there is no Intl (QuickJS): English. */
class PlainNumberFormat {
  constructor(options) {
    this.o = options;
  }

  format(value) {
    const o = this.o;
    let v = o.maximumSignificantDigits ? significant(value, o.maximumSignificantDigits) : value;
    let suffix = "";
    if (o.notation === "compact") {
      const [size, letter] = COMPACT.find(([s]) => Math.abs(v) >= s) || [1, ""];
      v /= size;
      suffix = letter;
      if (o.maximumSignificantDigits) v = significant(v, o.maximumSignificantDigits);
    }
    const digits = o.maximumSignificantDigits ? 6 : o.maximumFractionDigits ?? 3;
    const text = grouped(v, Math.min(digits, 20), o.minimumFractionDigits ?? 0) + suffix;
    return o.style === "currency" ? `${o.currency} ${text}` : text;
  }
}

function formatter(options) {
  const key = JSON.stringify(options);
  let found = formatters.get(key);
  if (!found) {
    found = typeof Intl === "undefined" ? new PlainNumberFormat(options) : new Intl.NumberFormat(undefined, options);
    formatters.set(key, found);
  }
  return found;
}

function number(value, digits) {
  return formatter({ maximumFractionDigits: digits, minimumFractionDigits: 0 }).format(value);
}

function compact(value, digits = 1) {
  if (Math.abs(value) < 10000) return number(value, Math.abs(value) < 10 ? 2 : digits);
  return formatter({ notation: "compact", maximumFractionDigits: digits }).format(value);
}

function duration(ms) {
  const a = Math.abs(ms);
  if (a < 1) return `${number(ms * 1000, 0)} µs`;
  if (a < 1000) return `${number(ms, a < 10 ? 2 : 0)} ms`;
  if (a < 60000) return `${number(ms / 1000, 2)} s`;
  if (a < 3600000) return `${number(ms / 60000, 1)} min`;
  return `${number(ms / 3600000, 1)} h`;
}

const FORMATTERS = {
  percent: (v, o) => `${number(v * 100, o.decimals ?? (Math.abs(v) < 0.1 ? 2 : 1))} %`,
  ratio: (v, o) => number(v, o.decimals ?? 2),
  score: (v, o) => number(v, o.decimals ?? 1),
  count: (v, o) => (o.decimals != null ? number(v, o.decimals) : compact(v)),
  ms: (v) => duration(v),
  seconds: (v) => duration(v * 1000),
  s: (v) => duration(v * 1000),
  per_second: (v) => `${compact(v)}/s`,
  bytes: (v) => {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
    return `${number(v, 1)} ${units[i]}`;
  },
  currency: (v, o) => {
    const digits = o.decimals ?? (Math.abs(v) >= 1000 ? 0 : 2);
    if (!o.currency) return compact(v, digits);
    const notation = Math.abs(v) >= 1e6 ? "compact" : "standard";
    return formatter({
      style: "currency", currency: o.currency, notation, maximumFractionDigits: digits,
      minimumFractionDigits: 0,
    }).format(v);
  },
};

/** A value for people: `formatValue(0.0345, "percent")` → "3.45 %". */
export function formatValue(value, unit, options = {}) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (!Number.isFinite(value)) return value > 0 ? "+∞" : "−∞";
  const fmt = FORMATTERS[unit];
  if (fmt) return fmt(value, options);
  const text = compact(value);
  return unit ? `${text} ${unit}` : text;
}

/** A relative change: 0.052 → "+5.2 %". */
export function formatChange(change) {
  if (change === null || change === undefined || !Number.isFinite(change)) return "–";
  const sign = change > 0 ? "+" : change < 0 ? "−" : "±";
  return `${sign}${number(Math.abs(change) * 100, 1)} %`;
}

export function statusText(status, text) {
  return text || STATUS_TEXT[status] || STATUS_TEXT.unknown;
}

/** The status words known here (a badge shows `unknown` for any other). */
export function knownStatus(status) {
  return status in STATUS_TEXT ? status : "unknown";
}

/** The words for a KPI's status: "OK" rather than "On target" when it has no target. */
export function kpiStatusText(kpi, status) {
  const t = kpi.thresholds || {};
  const judged = kpi.target != null || t.warning != null || t.critical != null;
  return status === "ok" && !judged ? "OK" : null;
}

let timeFormat = null; // made on first use: a date formatter loads time zone data

export function formatTime(ms) {
  if (ms === null || ms === undefined) return "–";
  if (typeof Intl === "undefined") return new Date(ms).toISOString().slice(0, 16).replace("T", " ");
  timeFormat ??= new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
  });
  return timeFormat.format(new Date(ms));
}

/** Axis labels: short, by unit, with enough digits to tell ticks apart. */
export function axisFormatter(unit, options = {}) {
  return (v) => {
    if (Math.abs(v) >= 10000 && (unit === "currency" || unit === "count" || !FORMATTERS[unit])) {
      const text = formatter({ notation: "compact", maximumSignificantDigits: 3 }).format(v);
      return unit === "currency" && options.currency ? `${text} ${options.currency}` : text;
    }
    return formatValue(v, unit, { ...options, decimals: undefined });
  };
}
