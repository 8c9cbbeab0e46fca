// Live seat state, shared by the map and the kiosk:
//  - SeatStore: the seat layout plus status/version per seat in typed arrays (map order);
//  - decodeRle: the compact snapshot (`"encoding": "rle"`, README's frames table);
//  - LiveClient: one WebSocket to /ws with subscribe, resume by offset, keep-alive, and
//    reconnect forever with exponential backoff and jitter (1, 2, 4, 8, 16 s cap);
//  - liveShow: loads the layout over HTTP, then keeps the store current from /ws.
// Memory stays flat over days: typed arrays sized once per layout, no logs or histories.

import { api } from "./api.js";

export const AVAILABLE = 0;
export const HELD = 1;
export const BOOKED = 2;
// off sale and kept for a sales channel: 6 and 7, clear of the seat map's drawing keys 3-5
export const BLOCKED = 6;
export const RESERVED = 7;
export const STATUS_NAMES = ["AVAILABLE", "HELD", "BOOKED", , , , "BLOCKED", "RESERVED"];
const STATUS_CODE = { AVAILABLE, HELD, BOOKED, BLOCKED, RESERVED, A: AVAILABLE, H: HELD, B: BOOKED, X: BLOCKED, R: RESERVED };

export function statusCode(name) {
  const c = STATUS_CODE[name];
  return c === undefined ? AVAILABLE : c;
}

// Decodes {"status":"A200H2A18B5","version":"1*200,3,2,1*18,4*5"} for `count` seats.
// Returns null when the runs do not add up to `count` (the layout changed under us).
export function decodeRle(statusRuns, versionRuns, count) {
  const status = new Uint8Array(count);
  const version = new Float64Array(count);
  let i = 0;
  const re = /([AHBXR])(\d+)/g; // the letters of STATUS_LETTER in app/realtime/frames.py
  let m;
  while ((m = re.exec(statusRuns || "")) !== null) {
    const n = Number(m[2]);
    if (i + n > count) return null;
    status.fill(STATUS_CODE[m[1]], i, i + n);
    i += n;
  }
  if (i !== count) return null;
  i = 0;
  if (versionRuns) {
    for (const part of versionRuns.split(",")) {
      const star = part.indexOf("*");
      const v = Number(star < 0 ? part : part.slice(0, star));
      const n = star < 0 ? 1 : Number(part.slice(star + 1));
      if (!Number.isFinite(v) || !Number.isFinite(n) || i + n > count) return null;
      version.fill(v, i, i + n);
      i += n;
    }
  }
  if (i !== count) return null;
  return { status, version };
}

export class SeatStore {
  constructor(seats) {
    const n = seats.length;
    this.count = n;
    this.labels = new Array(n);
    this.index = new Map();
    this.status = new Uint8Array(n);
    this.version = new Float64Array(n);
    this.x = new Float64Array(n);
    this.y = new Float64Array(n);
    this.section = new Array(n);
    this.category = new Array(n);
    this.price = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const s = seats[i];
      this.labels[i] = s.label;
      this.index.set(s.label, i);
      this.status[i] = statusCode(s.status);
      this.version[i] = s.version || 0;
      this.x[i] = s.x ?? i;
      this.y[i] = s.y ?? 0;
      this.section[i] = s.section || "";
      this.category[i] = s.category || "standard";
      this.price[i] = s.price_cents || 0;
    }
  }

  statusName(i) {
    return STATUS_NAMES[this.status[i]];
  }

  // Full state from a snapshot frame. Returns the changed indices, or null when the frame
  // does not match this layout (caller reloads the layout).
  applySnapshot(frame) {
    const changed = [];
    if (frame.encoding === "rle") {
      if (frame.count !== undefined && frame.count !== this.count) return null;
      const d = decodeRle(frame.status, frame.version, this.count);
      if (!d) return null;
      for (let i = 0; i < this.count; i++) {
        if (this.status[i] !== d.status[i]) changed.push(i);
        this.status[i] = d.status[i];
        this.version[i] = d.version[i];
      }
      return changed;
    }
    const seats = frame.seats || [];
    if (seats.length !== this.count) return null;
    for (const s of seats) {
      if (!this.index.has(s.label)) return null;
    }
    for (const s of seats) {
      const i = this.index.get(s.label);
      const st = statusCode(s.status);
      if (this.status[i] !== st) changed.push(i);
      this.status[i] = st;
      this.version[i] = s.version || 0;
    }
    return changed;
  }

  // Seat changes; a change older than what we have (lower version) is ignored.
  applyChanges(changes, out = []) {
    for (const c of changes || []) {
      const i = this.index.get(c.label);
      if (i === undefined) continue;
      const v = c.version || 0;
      if (v < this.version[i]) continue;
      const st = statusCode(c.status);
      this.version[i] = v;
      if (this.status[i] !== st) {
        this.status[i] = st;
        out.push(i);
      }
    }
    return out;
  }

  counts() {
    const c = [0, 0, 0, 0, 0, 0, 0, 0];
    for (let i = 0; i < this.count; i++) c[this.status[i]]++;
    return { AVAILABLE: c[0], HELD: c[1], BOOKED: c[2], BLOCKED: c[BLOCKED], RESERVED: c[RESERVED], total: this.count };
  }
}

const BACKOFF = [1, 2, 4, 8, 16];
const PING_EVERY_MS = 20_000;
const SILENCE_LIMIT_MS = 50_000;

export function backoffDelay(attempt, random = Math.random) {
  const base = BACKOFF[Math.min(attempt, BACKOFF.length - 1)];
  // "equal jitter": half fixed, half random, so a venue full of kiosks spreads out
  return (base / 2 + random() * (base / 2)) * 1000;
}

export class LiveClient {
  // handlers: onFrame(frame), onState({state, retryAt, attempt})
  // counted: false for a display (a kiosk): not one of the "people viewing"
  constructor({ showId, encoding = null, offset = null, onFrame, onState, url, counted = true }) {
    this.showId = showId;
    this.counted = counted;
    this.encoding = encoding;
    this.offset = offset || null;
    this.onFrame = onFrame;
    this.onState = onState || (() => {});
    this.url = url || `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
    this.ws = null;
    this.attempt = 0;
    this.stopped = true;
    this.retryTimer = null;
    this.pingTimer = null;
    this.lastHeard = 0;
    this.state = "idle";
    this.everConnected = false;
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this._connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onclose = ws.onerror = ws.onmessage = ws.onopen = null;
      try {
        ws.close(1000);
      } catch {
        /* already closed */
      }
    }
    this._setState("stopped");
  }

  // Forget the resume point: the next (re)subscribe asks for a fresh snapshot.
  resync(offset = null) {
    this.offset = offset;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this._subscribe();
  }

  send(obj) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(obj));
      return true;
    }
    return false;
  }

  _setState(state, extra = {}) {
    this.state = state;
    this.onState({ state, attempt: this.attempt, ...extra });
  }

  _subscribe() {
    const msg = { type: "subscribe", show_id: this.showId };
    if (this.offset) msg.offset = this.offset;
    if (this.encoding) msg.encoding = this.encoding;
    if (!this.counted) msg.counted = false;
    this.send(msg);
  }

  _connect() {
    if (this.stopped) return;
    this._setState(this.everConnected ? "reconnecting" : "connecting", { retryAt: null });
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch {
      this._scheduleRetry();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.lastHeard = Date.now();
      this._subscribe();
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => this._keepAlive(), PING_EVERY_MS);
    };
    ws.onmessage = (ev) => {
      this.lastHeard = Date.now();
      let frame;
      try {
        frame = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (frame.offset !== undefined && frame.offset !== null && frame.show_id === this.showId) {
        if (frame.type === "snapshot" || frame.type === "seats") this.offset = String(frame.offset);
      }
      if (frame.type === "snapshot" || frame.type === "seats" || frame.type === "presence") {
        if (this.state !== "connected") {
          this.attempt = 0;
          this.everConnected = true;
          this._setState("connected");
        }
      }
      if (frame.type === "pong") return;
      try {
        this.onFrame(frame);
      } catch (err) {
        // a page bug must not kill the connection loop
        console.error("live frame handler failed", err);
      }
    };
    ws.onerror = () => {};
    ws.onclose = () => {
      clearInterval(this.pingTimer);
      if (this.ws === ws) this.ws = null;
      if (this.stopped) return;
      this._scheduleRetry();
    };
  }

  _keepAlive() {
    if (!this.ws) return;
    if (Date.now() - this.lastHeard > SILENCE_LIMIT_MS) {
      // half-open connection (a kiosk's network went away silently): drop it and reconnect
      try {
        this.ws.close(4000, "silent");
      } catch {
        /* ignore */
      }
      return;
    }
    this.send({ type: "ping" });
  }

  _scheduleRetry() {
    clearTimeout(this.retryTimer);
    const delay = backoffDelay(this.attempt);
    this.attempt++;
    const retryAt = Date.now() + delay;
    this._setState("reconnecting", { retryAt });
    this.retryTimer = setTimeout(() => this._connect(), delay);
  }
}

// Loads the seat layout over HTTP, then keeps it live over /ws.
// handlers: onLayout(store, seatMapResponse), onSeats(store, changedIndices),
// onPresence(watchers), onAnnouncement(message, frame), onShow(frame), onState(state), onError(frame)
export function liveShow(showId, handlers) {
  let store = null;
  let client = null;
  let loading = null;
  const big = { threshold: 1000 };
  let lastAnnouncementAt = null; // a resync's snapshot repeats it: show it once

  async function loadLayout() {
    const data = await api("GET", `/shows/${showId}/seats`);
    store = new SeatStore(data.seats || []);
    handlers.onLayout && handlers.onLayout(store, data);
    return data;
  }

  function reloadLayout() {
    if (loading) return loading;
    loading = (async () => {
      // keep trying: the server may be restarting
      for (let attempt = 0; ; attempt++) {
        try {
          const data = await loadLayout();
          if (client) client.resync(data.offset || null);
          return;
        } catch (err) {
          if (err && err.status === 404) {
            handlers.onError && handlers.onError({ code: "not_found", message: err.message });
            return;
          }
          await new Promise((r) => setTimeout(r, backoffDelay(attempt)));
        }
      }
    })().finally(() => {
      loading = null;
    });
    return loading;
  }

  function onFrame(frame) {
    if (frame.show_id !== undefined && frame.show_id !== showId) return;
    switch (frame.type) {
      case "snapshot": {
        if (!store) return;
        const changed = store.applySnapshot(frame);
        if (changed === null) {
          reloadLayout();
          return;
        }
        handlers.onSeats && handlers.onSeats(store, changed, frame);
        // the show's last announcement, for a watcher who arrived after it was made
        if (frame.announcement && frame.announcement.message && frame.announcement.at !== lastAnnouncementAt) {
          lastAnnouncementAt = frame.announcement.at;
          handlers.onAnnouncement && handlers.onAnnouncement(frame.announcement.message, frame.announcement);
        }
        break;
      }
      case "seats": {
        if (!store) return;
        const changed = store.applyChanges(frame.changes);
        handlers.onSeats && handlers.onSeats(store, changed, frame);
        break;
      }
      case "presence":
        handlers.onPresence && handlers.onPresence(frame.watchers, frame);
        break;
      case "announcement":
        handlers.onAnnouncement && handlers.onAnnouncement(frame.message, frame);
        break;
      case "show":
        handlers.onShow && handlers.onShow(frame);
        break;
      case "error":
        handlers.onError && handlers.onError(frame);
        break;
      default:
        break;
    }
  }

  const ready = (async () => {
    let data = null;
    for (let attempt = 0; ; attempt++) {
      try {
        data = await loadLayout();
        break;
      } catch (err) {
        if (err && err.status === 404) {
          handlers.onError && handlers.onError({ code: "not_found", message: err.message });
          throw err;
        }
        const delay = backoffDelay(attempt);
        handlers.onState && handlers.onState({ state: "reconnecting", retryAt: Date.now() + delay, attempt });
        await new Promise((r) => setTimeout(r, delay));
      }
    }
    client = new LiveClient({
      showId,
      encoding: store.count > big.threshold ? "rle" : null,
      offset: data.offset || null,
      onFrame,
      onState: (s) => handlers.onState && handlers.onState(s),
      counted: handlers.counted !== false,
    });
    client.start();
    return store;
  })();

  return {
    ready,
    get store() {
      return store;
    },
    get client() {
      return client;
    },
    reloadLayout,
    stop() {
      if (client) client.stop();
    },
  };
}
