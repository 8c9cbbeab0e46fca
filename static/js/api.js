// HTTP API client shared by every page: JSON in and out, typed errors. The guest token is
// kept in localStorage (a hold survives a reload), the admin token per tab in sessionStorage.

const GUEST_KEY = "modex.guest";
const ADMIN_KEY = "modex.adminToken";

export class ApiError extends Error {
  constructor(status, body, retryAfter) {
    const message = (body && body.message) || `Request failed (HTTP ${status})`;
    super(message);
    this.status = status;
    this.code = (body && body.error) || "http_" + status;
    this.body = body || {};
    this.retryAfter = retryAfter; // seconds, for 429/503
  }
}

function parseRetryAfter(value) {
  if (!value) return null;
  const secs = Number(value);
  if (Number.isFinite(secs)) return Math.max(0, Math.ceil(secs));
  const when = Date.parse(value);
  return Number.isFinite(when) ? Math.max(0, Math.ceil((when - Date.now()) / 1000)) : null;
}

export async function api(method, path, { body, token, headers = {}, signal } = {}) {
  const h = { Accept: "application/json", ...headers };
  if (body !== undefined) h["Content-Type"] = "application/json";
  if (token) h.Authorization = `Bearer ${token}`;
  let res;
  try {
    res = await fetch(path, {
      method,
      headers: h,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: "no-store",
    });
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError(0, { error: "network", message: "Can't reach the server. Check your connection and try again." });
  }
  let data = null;
  if (res.status !== 204) {
    const text = await res.text();
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = { error: "bad_response", message: text.slice(0, 200) };
      }
    }
  }
  if (!res.ok) {
    const retry = parseRetryAfter(res.headers.get("Retry-After")) ?? (data && data.retry_after) ?? null;
    throw new ApiError(res.status, data, retry);
  }
  return data;
}

// ---- customer (guest) token ----

function readGuest() {
  try {
    const saved = JSON.parse(localStorage.getItem(GUEST_KEY) || "null");
    if (saved && saved.token && (!saved.expires_at || Date.parse(saved.expires_at) - Date.now() > 60_000)) {
      return saved;
    }
  } catch {
    /* corrupt entry: start over */
  }
  return null;
}

let guestPromise = null;

export async function customerToken({ renew = false } = {}) {
  if (!renew) {
    const saved = readGuest();
    if (saved) return saved.token;
  }
  if (!guestPromise) {
    guestPromise = api("POST", "/auth/guest", { body: {} })
      .then((t) => {
        localStorage.setItem(GUEST_KEY, JSON.stringify(t));
        return t.token;
      })
      .finally(() => {
        guestPromise = null;
      });
  }
  return guestPromise;
}

export function customerId() {
  const saved = readGuest();
  return saved ? saved.user_id : null;
}

// ---- the waiting room's admission token, per show (static/js/queue-page.js sets it) ----
export const admission = {
  get: (showId) => localStorage.getItem(`modex.admission.${showId}`) || "",
  set: (showId, token) => localStorage.setItem(`modex.admission.${showId}`, token),
};
const SEAT_WRITE = /^\/shows\/(\d+)\/(holds|book)$/;

// A customer call: adds the token, and on 401 fetches a fresh guest token once and retries.
// Holds and books carry the show's admission; refused one, the customer goes to the queue.
export async function customerApi(method, path, opts = {}) {
  const token = await customerToken();
  const write = SEAT_WRITE.exec(path);
  if (write && admission.get(write[1])) {
    opts = { ...opts, headers: { ...(opts.headers || {}), "Admission-Token": admission.get(write[1]) } };
  }
  try {
    return await api(method, path, { ...opts, token });
  } catch (err) {
    if (write && err instanceof ApiError && err.code === "not_admitted") {
      location.assign(`/queue/${write[1]}`);
    }
    if (err instanceof ApiError && err.status === 401) {
      localStorage.removeItem(GUEST_KEY);
      const fresh = await customerToken({ renew: true });
      return api(method, path, { ...opts, token: fresh });
    }
    throw err;
  }
}

// Per tab: gone when the tab closes, and not readable from the browser's other tabs.
try {
  localStorage.removeItem(ADMIN_KEY); // where earlier versions kept it
} catch {
  // storage refused (a kiosk framed by a signage page of another site): nothing kept there
}
export const adminToken = {
  get: () => sessionStorage.getItem(ADMIN_KEY) || "",
  set: (t) => (t ? sessionStorage.setItem(ADMIN_KEY, t) : sessionStorage.removeItem(ADMIN_KEY)),
};

export function uuid() {
  if (globalThis.crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
