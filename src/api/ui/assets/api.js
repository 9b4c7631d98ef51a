// The JSON API of the daemon, as the page uses it: same-origin requests with the session
// cookie (when a token is configured), the CSRF header on every state-changing request, and
// errors as ApiError values carrying the API's code, message and field.

export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `request failed with status ${status}`);
    this.status = status;
    this.code = e.code || "error";
    this.field = e.field || null;
  }
}

// The value of the readable CSRF cookie the login set ("" without a login).
function csrf() {
  const m = document.cookie.match(/(?:^|;\s*)ferry_csrf=([^;]*)/);
  return m ? decodeURIComponent(m[1]) : "";
}

let onUnauthorized = () => {};
// Sets what happens when the API answers 401 (the app shows the login page).
export function setUnauthorizedHandler(f) { onUnauthorized = f; }

export async function request(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-Ferry-CSRF"] = csrf();
  let payload;
  if (body instanceof FormData) payload = body;
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const r = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (r.status === 401 && !path.startsWith("/ui/")) onUnauthorized();
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

export const get = (path) => request("GET", path);
export const post = (path, body) => request("POST", path, body);

// Calls a route of the API as ROUTES in src/api/auth.rs names it (`POST /api/v1/runs/{id}/cancel`),
// its {params} taken from `params`. Every action of the UI goes through here by a route of
// NEEDS (scope.js), so the scope a button is checked for is the scope of the route it calls.
export function call(route, params, body) {
  const [method, path] = route.split(" ");
  return request(method, path.replace(/\{(\w+)\}/g, (_, k) => encodeURIComponent(params[k])), body);
}

// GET a text resource (a job's source).
export async function getText(path) {
  const r = await fetch(path, { credentials: "same-origin" });
  if (r.status === 401) onUnauthorized();
  if (!r.ok) {
    let body = null;
    try { body = await r.json(); } catch { /* not JSON */ }
    throw new ApiError(r.status, body);
  }
  return r.text();
}

// A query string from an object, leaving out empty values.
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, v);
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

// Server-Sent Events from the API: handlers by event type. Returns a function that closes
// the stream. `onError` is told when the connection drops (the browser reconnects by itself).
export function stream(path, handlers, onError) {
  const es = new EventSource(path, { withCredentials: true });
  for (const [type, f] of Object.entries(handlers)) {
    es.addEventListener(type, (e) => {
      let data = null;
      try { data = JSON.parse(e.data); } catch { return; }
      f(data, e);
    });
  }
  if (onError) es.onerror = onError;
  return () => es.close();
}
