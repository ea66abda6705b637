// opsmetrics browser SDK: product events from web pages to an opsmetrics server.
// No dependencies. Events are kept in localStorage until the server has acknowledged them,
// each with an id made here, so a batch sent twice (a retry, a beacon racing a fetch, another
// tab) is stored once: the server dedupes by id.

const PREFIX = "opsmetrics:";
const DEFAULTS = {
  batchSize: 20, // send as soon as this many events wait...
  flushInterval: 5000, // ...or this many ms after the first one
  maxQueue: 1000, // events kept while the server cannot be reached; the oldest go first
  retryBase: 1000, // first retry delay (ms), doubled per failure, with jitter
  retryMax: 60000,
  pageviews: true, // $pageview on load and on history.pushState/replaceState/popstate
  respectDnt: true, // navigator.doNotTrack === "1": send nothing
};
const BEACON_BYTES = 60000; // browsers refuse beacons and keepalive bodies above 64 KiB

let cfg = null;
let queue = [];
let entity = "";
let timer = 0;
let sending = null;
let failures = 0;
let backingOff = false;
let lastPath = "";
let lastHref = "";

function storage() {
  try {
    return window.localStorage;
  } catch {
    return null; // blocked (privacy settings, sandboxed frame)
  }
}

function load(name) {
  try {
    return storage()?.getItem(PREFIX + name) ?? null;
  } catch {
    return null;
  }
}

function save(name, value) {
  try {
    const s = storage();
    if (value === null) s?.removeItem(PREFIX + name);
    else s?.setItem(PREFIX + name, value);
  } catch {
    // Quota exceeded or storage blocked: the events stay in memory only.
  }
}

function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function queueKey() {
  return `queue:${cfg.key.slice(-12)}`;
}

function persist() {
  save(queueKey(), queue.length ? JSON.stringify(queue) : null);
}

function restore() {
  try {
    const stored = JSON.parse(load(queueKey()) || "[]");
    return Array.isArray(stored) ? stored : [];
  } catch {
    return [];
  }
}

function silenced() {
  if (!cfg) return true;
  if (load("optout") === "1") return true;
  return cfg.respectDnt && navigator.doNotTrack === "1";
}

function cleanProps(props) {
  const out = {};
  for (const [k, v] of Object.entries(props || {})) {
    const kind = typeof v;
    if (kind === "string" || kind === "boolean" || (kind === "number" && Number.isFinite(v))) {
      out[k] = v;
    }
  }
  return out;
}

function enqueue(event) {
  queue.push(event);
  if (queue.length > cfg.maxQueue) queue.splice(0, queue.length - cfg.maxQueue);
  persist();
  if (backingOff) return;
  if (queue.length >= cfg.batchSize) schedule(0);
  else if (!timer) schedule(cfg.flushInterval);
}

function schedule(ms) {
  clearTimeout(timer);
  timer = setTimeout(() => {
    timer = 0;
    backingOff = false;
    flush();
  }, ms);
}

function endpoint() {
  return `${cfg.url.replace(/\/+$/, "")}/api/v1/sdk/events?key=${encodeURIComponent(cfg.key)}`;
}

function retryAfterMs(response) {
  const header = response?.headers.get("Retry-After");
  if (!header) return null;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(header);
  return Number.isNaN(at) ? null : Math.max(0, at - Date.now());
}

function backoff(response) {
  failures += 1;
  const exp = Math.min(cfg.retryMax, cfg.retryBase * 2 ** (failures - 1));
  const jittered = exp / 2 + (Math.random() * exp) / 2;
  backingOff = true;
  schedule(retryAfterMs(response) ?? jittered);
}

function forget(batch) {
  const sent = new Set(batch.map((e) => e.id));
  queue = queue.filter((e) => !sent.has(e.id));
  persist();
}

async function post(batch) {
  const body = JSON.stringify(batch);
  let response = null;
  try {
    response = await fetch(endpoint(), {
      method: "POST",
      // text/plain keeps it a simple CORS request: no preflight round trip.
      headers: { "Content-Type": "text/plain" },
      body,
      credentials: "omit",
      keepalive: body.length < BEACON_BYTES,
    });
  } catch {
    // Offline, refused, or a CORS failure: keep the events and try again later.
  }
  const status = response ? response.status : 0;
  if (status >= 200 && status < 300) {
    failures = 0;
    forget(batch);
    return true;
  }
  if (status >= 400 && status < 500 && status !== 408 && status !== 429) {
    // The server will refuse these events however often they are sent.
    console.warn(`opsmetrics: ${status} ${await response.text()}`);
    forget(batch);
    return true;
  }
  backoff(response);
  return false;
}

async function drain() {
  while (queue.length && !backingOff && !silenced()) {
    if (!(await post(queue.slice(0, cfg.batchSize)))) return;
  }
}

/** Send what is waiting now; resolves when done (or when the server asked to wait). */
export function flush() {
  if (!cfg || backingOff) return sending || Promise.resolve();
  clearTimeout(timer);
  timer = 0;
  if (!sending) sending = drain().finally(() => (sending = null));
  return sending;
}

function beacon() {
  // While the server is refusing (429, 503, offline) leave the events in localStorage for the
  // next page instead of a beacon whose answer nobody reads.
  if (!cfg || backingOff || silenced() || !navigator.sendBeacon) return;
  while (queue.length) {
    let n = Math.min(queue.length, cfg.batchSize);
    let body = JSON.stringify(queue.slice(0, n));
    while (n > 1 && body.length > BEACON_BYTES) {
      n = Math.ceil(n / 2);
      body = JSON.stringify(queue.slice(0, n));
    }
    const blob = new Blob([body], { type: "text/plain" });
    if (!navigator.sendBeacon(endpoint(), blob)) return;
    forget(queue.slice(0, n));
  }
}

/** Record an event: a name, string/number/boolean properties, and an optional value. */
export function track(name, props, value) {
  if (!silenced()) enqueue(makeEvent(name, props, value));
}

function makeEvent(name, props, value) {
  const event = { name, ts: Date.now(), entity, props: cleanProps(props), id: randomId() };
  if (typeof value === "number" && Number.isFinite(value)) event.value = value;
  return event;
}

/** The user (account, customer…) the following events belong to. */
export function identify(id) {
  const previous = entity;
  entity = String(id);
  save("entity", entity);
  if (previous !== entity) track("$identify", { anonymous_id: previous });
}

/** Forget the identified user (on sign-out): later events get a new anonymous id. */
export function reset() {
  entity = `anon-${randomId()}`;
  save("entity", entity);
}

/** Stop sending, here and on later visits (persisted), and drop what is waiting. */
export function optOut() {
  save("optout", "1");
  queue = [];
  if (cfg) persist();
}

export function optIn() {
  save("optout", null);
}

function pageview(referrer) {
  lastPath = location.pathname;
  lastHref = location.href;
  return makeEvent("$pageview", { path: lastPath, referrer });
}

function routeChanged() {
  if (location.pathname === lastPath || silenced()) return;
  const event = pageview(lastHref);
  // The title is read a moment later: a router sets it after it has changed the URL.
  setTimeout(() => {
    event.props.title = document.title;
    enqueue(event);
  }, 0);
}

function watchHistory() {
  for (const method of ["pushState", "replaceState"]) {
    const original = history[method];
    history[method] = function (...args) {
      const result = original.apply(this, args);
      routeChanged();
      return result;
    };
  }
  addEventListener("popstate", routeChanged);
}

/** Start: `init({url, key})`, with any of DEFAULTS' options to change. */
export function init(options) {
  if (!options?.url || !options?.key) throw new Error("opsmetrics.init needs {url, key}");
  const first = !cfg;
  cfg = { ...DEFAULTS, ...options };
  queue = restore();
  entity = load("entity") || "";
  if (!entity) reset();
  if (!first) return;
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") beacon();
  });
  addEventListener("pagehide", beacon);
  addEventListener("online", () => {
    backingOff = false; // the network is back: no need to wait out the backoff
    flush();
  });
  if (queue.length) schedule(0); // left from an earlier page: the server may be back
  if (cfg.pageviews) {
    watchHistory();
    if (!silenced()) {
      const event = pageview(document.referrer);
      event.props.title = document.title;
      enqueue(event);
    }
  }
}
