// JSON API access: the stored token (if any) as a bearer header, Prometheus-style errors.
const TOKEN_KEY = "opsmetrics-token";

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

function headers(extra = {}) {
  const out = { Accept: "application/json", ...extra };
  let token = null;
  try { token = localStorage.getItem(TOKEN_KEY); } catch { /* storage blocked */ }
  if (token) out.Authorization = `Bearer ${token}`;
  return out;
}

async function decode(response) {
  let body = null;
  try { body = await response.json(); } catch { body = null; }
  if (!response.ok || (body && body.status === "error")) {
    const message = (body && body.error) || `${response.status} ${response.statusText}`;
    throw new ApiError(message, response.status);
  }
  return body;
}

/** The URL for an API path and its query parameters (empty ones left out). */
export function apiURL(path, params = {}) {
  const url = new URL(path, window.location.origin);
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "") continue;
    for (const v of Array.isArray(value) ? value : [value]) url.searchParams.append(key, v);
  }
  return url;
}

/** The body's `data` (or the whole body) of a fetch() answer; API errors as ApiError. */
export async function readJSON(response) {
  const body = await decode(await response);
  return body && "data" in body ? body.data : body;
}

/** GET a JSON API path; returns the body's `data` (or the whole body when it has none). */
export async function getJSON(path, params = {}) {
  return readJSON(fetch(apiURL(path, params), { headers: headers() }));
}

/** POST a JSON body; returns the decoded answer's `data` (or the body). */
export async function postJSON(path, payload) {
  const response = await fetch(path, {
    method: "POST",
    headers: headers({ "Content-Type": "application/json" }),
    body: JSON.stringify(payload ?? {}),
  });
  const body = await decode(response);
  return body && typeof body === "object" && "data" in body ? body.data : body;
}

export function storeToken(token) {
  localStorage.setItem(TOKEN_KEY, token);
  document.cookie = `opsmetrics_token=${encodeURIComponent(token)}; path=/; SameSite=Strict`;
}
