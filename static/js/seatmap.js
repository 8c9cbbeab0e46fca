// Seat map rendering shared by the map page and the kiosk.
//
// Up to DOM_LIMIT seats: one element per seat (a <button> when interactive) carrying
// data-seat, data-status and an accessible name; one delegated listener for clicks and keys
// (roving tabindex, arrow keys move between seats and rows).
// Bigger venues: one <canvas> (one listener, hit testing by x/y, pan and zoom), plus a
// keyboard-navigable section/row picker made of real buttons for the chosen row.
// Changes are batched into one requestAnimationFrame; only dirty seats are redrawn.

import { AVAILABLE, HELD, BOOKED, BLOCKED, RESERVED } from "./live.js";
import { el, money } from "./util.js";

export const DOM_LIMIT = 2000;
// a finger, not a mouse: seats get room for a fingertip (WCAG 2.5.8: 24 x 24 CSS px)
export const TOUCH = typeof matchMedia === "function" && matchMedia("(pointer: coarse)").matches;
const TOUCH_CELL = 30; // a seat is 0.82 of its cell: 24.6 px

// Category colours: dark enough for 3:1 against white (non-text contrast).
export const PALETTE = ["#2563eb", "#7c3aed", "#0f766e", "#c2410c", "#be185d", "#4d7c0f", "#0369a1", "#a16207"];
const BG = "#ffffff";
const HELD_FILL = "#e2e8f0";
const HELD_LINE = "#64748b";
const BOOKED_FILL = "#334155";
const BLOCKED_FILL = "#111827"; // off sale: near-black with a white bar (a "no entry" sign)
const RESERVED_FILL = "#6b21a8"; // kept for a channel: deep purple with a white dot
const MINE_FILL = "#f59e0b";
const MINE_LINE = "#78350f";
const OWNED_FILL = "#9a3412"; // the customer's own booked seats: white cross on dark orange
const FOCUS = "#111827";
const FOCUS_OUTER = "#fbbf24";

export const NONE = 0;
export const SELECTED = 1;
export const MINE = 2;
export const OWNED = 3; // booked by this customer

const STATUS_WORD = ["available", "held by someone else", "booked", , , , "not for sale", "reserved"];
const STATUS_ATTR = ["AVAILABLE", "HELD", "BOOKED", , , , "BLOCKED", "RESERVED"];

export function splitLabel(label) {
  const m = /^([A-Z]+)(\d+)$/.exec(label);
  return m ? [m[1], m[2]] : [label, ""];
}

export function seatName(store, i, state = NONE) {
  const [row, num] = splitLabel(store.labels[i]);
  const word = state === MINE ? "held by you" : state === OWNED ? "booked by you" : STATUS_WORD[store.status[i]];
  const price = store.price[i] ? `, ${money(store.price[i])}` : "";
  return `Row ${row} seat ${num}, ${word}${price}`;
}

export function categoryColours(store) {
  const map = new Map();
  for (let i = 0; i < store.count; i++) {
    const c = store.category[i];
    if (!map.has(c)) map.set(c, { index: map.size, colour: PALETTE[map.size % PALETTE.length], price: store.price[i], available: 0, total: 0 });
  }
  return map;
}

// A legend whose swatches use the same classes as the seats (shape + pattern, not colour only).
export function legend(store, { showMine = true, showSelected = true, showOwned = false } = {}) {
  const cats = categoryColours(store);
  const items = [];
  for (const [name, c] of cats) {
    const label = cats.size > 1 || name !== "standard" ? `${cap(name)}${c.price ? " · " + money(c.price) : ""}` : `Available${c.price ? " · " + money(c.price) : ""}`;
    items.push(swatch("AVAILABLE", "", c.colour, label));
  }
  if (showSelected) items.push(swatch("AVAILABLE", "is-selected", cats.values().next().value?.colour || PALETTE[0], "Your pick"));
  if (showMine) items.push(swatch("HELD", "is-mine", PALETTE[0], "Held for you"));
  items.push(swatch("HELD", "", PALETTE[0], "Held"));
  items.push(swatch("BOOKED", "", PALETTE[0], "Sold"));
  const counts = store.counts();
  if (counts.BLOCKED) items.push(swatch("BLOCKED", "", PALETTE[0], "Not for sale"));
  if (counts.RESERVED) items.push(swatch("RESERVED", "", PALETTE[0], "Reserved"));
  if (showOwned) items.push(swatch("BOOKED", "is-owned", PALETTE[0], "Booked by you"));
  return el("ul", { class: "legend", "aria-label": "Legend" }, items);
}

function swatch(status, extra, colour, text) {
  const s = el("span", { class: `seat swatch ${extra}`, "data-status": status, "aria-hidden": "true" });
  s.style.setProperty("--cat", colour);
  return el("li", {}, s, el("span", {}, text));
}

function cap(s) {
  return s ? s[0].toUpperCase() + s.slice(1) : s;
}

export class SeatMap {
  // opts: interactive (bool), fit ("width" | "contain"), seatState(i) -> NONE|SELECTED|MINE,
  // seatState may also answer OWNED (the customer's booked seats)
  //       onActivate(i), onHover(i|-1), mode ("auto" | "dom" | "canvas")
  constructor(root, opts = {}) {
    this.root = root;
    this.opts = { interactive: true, fit: "width", mode: "auto", seatState: () => NONE, onActivate: () => {}, onHover: () => {}, ...opts };
    this.store = null;
    this.raf = 0;
    this.dirtyList = null;
    this.dirtyFlag = null;
    this.dirtyCount = 0;
    this.fullDirty = false;
    this.rendered = null; // last drawn visual key per seat
    this.resizeObs = new ResizeObserver(() => this._resize());
    this.resizeObs.observe(root);
    this.firstRender = null;
    this.frameHook = null; // (ms spent drawing) -> void, for benchmarks
  }

  destroy() {
    cancelAnimationFrame(this.raf);
    this.resizeObs.disconnect();
    this.root.replaceChildren();
  }

  setStore(store) {
    this.store = store;
    const n = store.count;
    this.dirtyList = new Int32Array(n);
    this.dirtyFlag = new Uint8Array(n);
    this.dirtyCount = 0;
    this.rendered = new Uint8Array(n).fill(255);
    this.cats = categoryColours(store);
    this.catIndex = new Uint8Array(n);
    for (let i = 0; i < n; i++) this.catIndex[i] = this.cats.get(store.category[i]).index % PALETTE.length;
    this._geometry();
    const mode = this.opts.mode === "auto" ? (n <= DOM_LIMIT ? "dom" : "canvas") : this.opts.mode;
    this.mode = mode;
    this.root.replaceChildren();
    this.root.dataset.mode = mode;
    this.root.dataset.seatCount = String(n);
    if (mode === "dom") this._buildDom();
    else this._buildCanvas();
    this._resize();
    this.updateAll();
  }

  statusOf(label) {
    const i = this.store ? this.store.index.get(label) : undefined;
    return i === undefined ? null : STATUS_ATTR[this.store.status[i]];
  }

  // ---- dirty tracking ----

  update(indices) {
    if (!this.store) return;
    if (!this.fullDirty) {
      for (const i of indices) {
        if (this.dirtyFlag[i]) continue;
        this.dirtyFlag[i] = 1;
        this.dirtyList[this.dirtyCount++] = i;
      }
      if (this.dirtyCount > this.store.count / 4) this.fullDirty = true;
    }
    this._schedule();
  }

  updateAll() {
    if (this.mode === "canvas" && this.cssW) this._clamp();
    this.fullDirty = true;
    this._schedule();
  }

  // keep the venue on screen: centred when it fits, edge to edge when it does not
  _clamp() {
    const v = this.view;
    const pad = 8;
    const top = this.sections.length > 1 ? 1.2 * v.s : 0;
    const w = this.cols * v.s, h = this.rows * v.s;
    if (w + 2 * pad <= this.cssW) v.tx = (this.cssW - w) / 2;
    else v.tx = Math.min(pad, Math.max(this.cssW - w - pad, v.tx));
    if (h + top + 2 * pad <= this.cssH) v.ty = (this.cssH - h + top) / 2;
    else v.ty = Math.min(pad + top, Math.max(this.cssH - h - pad, v.ty));
  }

  _schedule() {
    if (!this.raf) this.raf = requestAnimationFrame(() => this._flush());
  }

  _flush() {
    this.raf = 0;
    if (!this.store) return;
    const t0 = performance.now();
    const full = this.fullDirty;
    if (this.mode === "dom") this._flushDom(full);
    else this._flushCanvas(full);
    for (let k = 0; k < this.dirtyCount; k++) this.dirtyFlag[this.dirtyList[k]] = 0;
    this.dirtyCount = 0;
    this.fullDirty = false;
    const spent = performance.now() - t0;
    if (this.firstRender === null) {
      this.firstRender = performance.now();
      this.root.dataset.rendered = "1";
      performance.mark("seatmap-rendered");
    }
    if (this.frameHook) this.frameHook(spent, full);
  }

  _key(i) {
    const st = this.opts.seatState(i);
    // 0..2 status; 3 selected; 4 mine; 5 owned; + hover/focus bit 8
    let k = st === MINE ? 4 : st === OWNED ? 5 : st === SELECTED ? 3 : this.store.status[i];
    if (i === this.hover || i === this.cursor) k |= 8;
    return k;
  }

  // ---- geometry, rows and sections ----

  _geometry() {
    const s = this.store;
    let minX = Infinity, maxX = -Infinity, minY = Infinity, maxY = -Infinity;
    for (let i = 0; i < s.count; i++) {
      if (s.x[i] < minX) minX = s.x[i];
      if (s.x[i] > maxX) maxX = s.x[i];
      if (s.y[i] < minY) minY = s.y[i];
      if (s.y[i] > maxY) maxY = s.y[i];
    }
    if (!s.count) minX = maxX = minY = maxY = 0;
    this.minX = minX;
    this.minY = minY;
    this.cols = Math.floor(maxX - minX) + 1;
    this.rows = Math.floor(maxY - minY) + 1;
    // rows: seats sharing a row label and a y, in x order
    const byRow = new Map();
    for (let i = 0; i < s.count; i++) {
      const key = splitLabel(s.labels[i])[0] + "@" + s.y[i];
      let r = byRow.get(key);
      if (!r) byRow.set(key, (r = []));
      r.push(i);
    }
    this.rowList = [...byRow.values()];
    for (const r of this.rowList) r.sort((a, b) => s.x[a] - s.x[b]);
    this.rowList.sort((a, b) => s.y[a[0]] - s.y[b[0]] || s.x[a[0]] - s.x[b[0]]);
    this.rowOf = new Int32Array(s.count);
    this.posInRow = new Int32Array(s.count);
    this.rowList.forEach((r, ri) => r.forEach((i, p) => ((this.rowOf[i] = ri), (this.posInRow[i] = p))));
    // sections, in map order, with their rows
    this.sections = [];
    const secIndex = new Map();
    this.rowList.forEach((r, ri) => {
      const name = s.section[r[0]] || "Seats";
      let sec = secIndex.get(name);
      if (!sec) {
        sec = { name, rows: [], minX: Infinity, minY: Infinity };
        secIndex.set(name, sec);
        this.sections.push(sec);
      }
      sec.rows.push(ri);
      for (const i of r) {
        sec.minX = Math.min(sec.minX, s.x[i]);
        sec.minY = Math.min(sec.minY, s.y[i]);
      }
    });
    // hit-test grid for the canvas
    this.grid = null;
    if (this.cols * this.rows <= 4_000_000) {
      this.grid = new Int32Array(this.cols * this.rows).fill(-1);
      for (let i = 0; i < s.count; i++) this.grid[Math.floor(s.y[i] - minY) * this.cols + Math.floor(s.x[i] - minX)] = i;
    }
  }

  _seatAtUnit(ux, uy) {
    const cx = Math.floor(ux), cy = Math.floor(uy);
    if (cx < 0 || cy < 0 || cx >= this.cols || cy >= this.rows) return -1;
    if (this.grid) return this.grid[cy * this.cols + cx];
    const s = this.store;
    for (let i = 0; i < s.count; i++) if (Math.floor(s.x[i] - this.minX) === cx && Math.floor(s.y[i] - this.minY) === cy) return i;
    return -1;
  }

  // neighbour for arrow-key navigation
  _neighbour(i, key) {
    const r = this.rowOf[i], p = this.posInRow[i];
    const row = this.rowList[r];
    switch (key) {
      case "ArrowLeft":
        return p > 0 ? row[p - 1] : i;
      case "ArrowRight":
        return p < row.length - 1 ? row[p + 1] : i;
      case "Home":
        return row[0];
      case "End":
        return row[row.length - 1];
      case "ArrowUp":
      case "ArrowDown":
      case "PageUp":
      case "PageDown": {
        const step = key === "ArrowUp" ? -1 : key === "ArrowDown" ? 1 : key === "PageUp" ? -5 : 5;
        const nr = Math.max(0, Math.min(this.rowList.length - 1, r + step));
        if (nr === r) return i;
        const x = this.store.x[i];
        let best = this.rowList[nr][0], bd = Infinity;
        for (const j of this.rowList[nr]) {
          const d = Math.abs(this.store.x[j] - x);
          if (d < bd) (bd = d), (best = j);
        }
        return best;
      }
      default:
        return -1;
    }
  }

  // ---- DOM mode ----

  _buildDom() {
    const s = this.store;
    const interactive = this.opts.interactive;
    const plane = el("div", { class: "seat-plane" });
    this.plane = plane;
    plane.style.setProperty("--cols", this.cols + 3);
    plane.style.setProperty("--rows", this.rows + 1);
    const frag = document.createDocumentFragment();
    for (const sec of this.sections) {
      if (this.sections.length > 1 || sec.name !== "Seats") {
        const lab = el("span", { class: "section-label", "aria-hidden": "true" }, sec.name);
        lab.style.setProperty("--x", sec.minX - this.minX + 1.5);
        lab.style.setProperty("--y", sec.minY - this.minY);
        frag.append(lab);
      }
    }
    for (const r of this.rowList) {
      const first = r[0];
      const lab = el("span", { class: "row-label", "aria-hidden": "true" }, splitLabel(s.labels[first])[0]);
      lab.style.setProperty("--x", s.x[first] - this.minX + 0.35);
      lab.style.setProperty("--y", s.y[first] - this.minY + 1);
      frag.append(lab);
    }
    this.els = new Array(s.count);
    for (let i = 0; i < s.count; i++) {
      const node = document.createElement(interactive ? "button" : "span");
      node.className = "seat";
      node.dataset.seat = s.labels[i];
      node.dataset.i = String(i);
      if (interactive) {
        node.type = "button";
        node.tabIndex = -1;
      }
      node.style.setProperty("--x", s.x[i] - this.minX + 1.5);
      node.style.setProperty("--y", s.y[i] - this.minY + 1);
      node.style.setProperty("--cat", PALETTE[this.catIndex[i]]);
      this.els[i] = node;
      frag.append(node);
    }
    plane.append(frag);
    this.cursor = -1;
    this.hover = -1;
    // row letters that stay at the left edge while the rows scroll sideways
    const rail = el("div", { class: "row-rail", "aria-hidden": "true" });
    for (const r of this.rowList) {
      const lab = el("span", { class: "row-label" }, splitLabel(s.labels[r[0]])[0]);
      lab.style.setProperty("--y", s.y[r[0]] - this.minY + 1);
      rail.append(lab);
    }
    this.rail = rail;
    // (the track spans the rows' whole width, so the sticky rail stays put to the end)
    const wrap = el("div", { class: "seat-scroll" }, el("div", { class: "seat-track" }, rail, plane));
    this.scroller = wrap;
    if (interactive) {
      plane.setAttribute("role", "group");
      plane.setAttribute("aria-label", `Seat map, ${s.count} seats. Arrow keys move between seats and rows, Enter or Space picks a seat.`);
      if (s.count) this.els[this._firstAvailable()].tabIndex = 0;
      plane.addEventListener("click", (e) => {
        const b = e.target.closest(".seat");
        if (!b) return;
        const i = Number(b.dataset.i);
        this._setRoving(i);
        this.opts.onActivate(i);
      });
      plane.addEventListener("keydown", (e) => {
        const b = e.target.closest(".seat");
        if (!b) return;
        const next = this._neighbour(Number(b.dataset.i), e.key);
        if (next < 0) return;
        e.preventDefault();
        this.focusSeat(next);
      });
      plane.addEventListener("focusin", (e) => {
        const b = e.target.closest(".seat");
        if (b) this.opts.onHover(Number(b.dataset.i));
      });
      plane.addEventListener("pointerover", (e) => {
        const b = e.target.closest(".seat");
        if (b) this.opts.onHover(Number(b.dataset.i));
      });
    } else {
      wrap.setAttribute("role", "img");
      this._summary(wrap);
      this.summaryTarget = wrap;
    }
    this.root.append(el("div", { class: "stage", "aria-hidden": "true" }, "Stage"), wrap);
  }

  _summary(node) {
    const c = this.store.counts();
    node.setAttribute("aria-label", `Seat map: ${c.AVAILABLE} of ${c.total} seats available, ${c.HELD} held, ${c.BOOKED} sold`);
  }

  _firstAvailable() {
    const s = this.store;
    for (let i = 0; i < s.count; i++) if (s.status[i] === AVAILABLE) return i;
    return 0;
  }

  _setRoving(i) {
    if (!this.els) return;
    if (this.roving !== undefined && this.els[this.roving]) this.els[this.roving].tabIndex = -1;
    else for (const e of this.plane.querySelectorAll('.seat[tabindex="0"]')) e.tabIndex = -1;
    this.roving = i;
    this.els[i].tabIndex = 0;
  }

  focusSeat(i) {
    if (i < 0 || !this.store) return;
    if (this.mode === "dom") {
      this._setRoving(i);
      this.els[i].focus();
      this.els[i].scrollIntoView({ block: "nearest", inline: "nearest" });
    } else {
      this.showRow(this.rowOf[i], i);
    }
  }

  _paintDomSeat(i) {
    const k = this._key(i) & 7;
    if (this.rendered[i] === k) return;
    this.rendered[i] = k;
    const node = this.els[i];
    node.dataset.status = STATUS_ATTR[this.store.status[i]];
    node.classList.toggle("is-selected", k === 3);
    node.classList.toggle("is-mine", k === 4);
    node.classList.toggle("is-owned", k === 5);
    if (this.opts.interactive) {
      const state = k === 4 ? MINE : k === 5 ? OWNED : k === 3 ? SELECTED : NONE;
      node.setAttribute("aria-label", seatName(this.store, i, state));
      node.setAttribute("aria-pressed", k === 3 ? "true" : "false");
      node.setAttribute("aria-disabled", this.store.status[i] !== AVAILABLE && k < 4 ? "true" : "false");
    }
  }

  _flushDom(full) {
    if (full) for (let i = 0; i < this.store.count; i++) this._paintDomSeat(i);
    else for (let k = 0; k < this.dirtyCount; k++) this._paintDomSeat(this.dirtyList[k]);
    if (this.summaryTarget) this._summary(this.summaryTarget);
  }

  // ---- canvas mode ----

  _buildCanvas() {
    const interactive = this.opts.interactive;
    this.canvas = el("canvas", { class: "seat-canvas", role: "img" });
    this.ctx = this.canvas.getContext("2d", { alpha: false });
    this.view = { s: 1, tx: 0, ty: 0 };
    this.hover = -1;
    this.cursor = -1;
    const wrap = el("div", { class: "canvas-wrap" }, this.canvas);
    this.canvasWrap = wrap;
    this.root.append(el("div", { class: "stage", "aria-hidden": "true" }, "Stage"));
    if (interactive) {
      const zoom = (f) => () => this._zoomAt(f, this.cssW / 2, this.cssH / 2);
      this.root.append(
        el(
          "div",
          { class: "canvas-toolbar" },
          el("button", { type: "button", class: "btn btn-small btn-ghost", onclick: zoom(1 / 1.5), "aria-label": "Zoom out" }, "−"),
          el("button", { type: "button", class: "btn btn-small btn-ghost", onclick: () => this._fit(true), "aria-label": "Fit the whole venue" }, "Fit"),
          el("button", { type: "button", class: "btn btn-small btn-ghost", onclick: zoom(1.5), "aria-label": "Zoom in" }, "+"),
          el("span", { class: "hint" }, TOUCH ? "Drag to move · pinch to zoom · or choose a row below" : "Drag to move · Ctrl + scroll to zoom · or choose a row below"),
        ),
      );
    }
    this.root.append(wrap);
    this._canvasLabel();
    if (interactive) {
      this._canvasEvents();
      this._buildPicker();
    }
  }

  _canvasLabel() {
    const c = this.store.counts();
    this.canvas.setAttribute("aria-label", `Seat map of ${c.total.toLocaleString()} seats: ${c.AVAILABLE.toLocaleString()} available, ${c.HELD.toLocaleString()} held, ${c.BOOKED.toLocaleString()} sold`);
  }

  _canvasEvents() {
    const cv = this.canvas;
    let down = null;
    const fingers = new Map(); // pointerId -> {x, y}: two of them pinch
    let pinch = null;
    const pinchState = () => {
      const [a, b] = [...fingers.values()];
      const r = cv.getBoundingClientRect();
      return { d: Math.hypot(a.x - b.x, a.y - b.y) || 1, mx: (a.x + b.x) / 2 - r.left, my: (a.y + b.y) / 2 - r.top };
    };
    const lift = (e) => {
      fingers.delete(e.pointerId);
      if (fingers.size < 2) pinch = null;
    };
    cv.addEventListener("pointerdown", (e) => {
      fingers.set(e.pointerId, { x: e.clientX, y: e.clientY });
      if (fingers.size === 2) {
        pinch = pinchState();
        down = null;
        return;
      }
      down = { x: e.clientX, y: e.clientY, tx: this.view.tx, ty: this.view.ty, moved: false };
      try {
        cv.setPointerCapture(e.pointerId);
      } catch {
        /* a synthetic or already released pointer */
      }
    });
    cv.addEventListener("pointercancel", (e) => {
      lift(e);
      down = null;
    });
    cv.addEventListener("pointermove", (e) => {
      if (fingers.has(e.pointerId)) fingers.set(e.pointerId, { x: e.clientX, y: e.clientY });
      if (pinch && fingers.size === 2) {
        const now = pinchState();
        this.view.tx += now.mx - pinch.mx;
        this.view.ty += now.my - pinch.my;
        this._zoomAt(now.d / pinch.d, now.mx, now.my);
        pinch = now;
        return;
      }
      if (down) {
        const dx = e.clientX - down.x, dy = e.clientY - down.y;
        if (down.moved || Math.abs(dx) + Math.abs(dy) > 5) {
          down.moved = true;
          this.view.tx = down.tx + dx;
          this.view.ty = down.ty + dy;
          this.updateAll();
          return;
        }
      }
      const i = this._hit(e);
      if (i !== this.hover) {
        const old = this.hover;
        this.hover = i;
        this.update([old, i].filter((x) => x >= 0));
        cv.style.cursor = i >= 0 ? "pointer" : "grab";
        this.opts.onHover(i);
      }
    });
    cv.addEventListener("pointerup", (e) => {
      const pinching = fingers.size > 1;
      lift(e);
      if (pinching) return;
      const wasClick = down && !down.moved;
      down = null;
      if (!wasClick) return;
      const i = this._hit(e);
      if (i >= 0) {
        this.showRow(this.rowOf[i], i, { focus: false, recenter: false });
        this.opts.onActivate(i);
      }
    });
    cv.addEventListener("pointerleave", () => {
      if (this.hover >= 0) {
        const old = this.hover;
        this.hover = -1;
        this.update([old]);
      }
    });
    cv.addEventListener(
      "wheel",
      (e) => {
        if (!e.ctrlKey && !e.metaKey) return;
        e.preventDefault();
        const r = cv.getBoundingClientRect();
        this._zoomAt(e.deltaY < 0 ? 1.2 : 1 / 1.2, e.clientX - r.left, e.clientY - r.top);
      },
      { passive: false },
    );
  }

  _hit(e) {
    const r = this.canvas.getBoundingClientRect();
    const ux = (e.clientX - r.left - this.view.tx) / this.view.s;
    const uy = (e.clientY - r.top - this.view.ty) / this.view.s;
    return this._seatAtUnit(ux, uy);
  }

  _zoomAt(f, cx, cy) {
    const v = this.view;
    const s2 = Math.max(this.fitScale * 0.8, Math.min(48, v.s * f));
    v.tx = cx - ((cx - v.tx) * s2) / v.s;
    v.ty = cy - ((cy - v.ty) * s2) / v.s;
    v.s = s2;
    this.updateAll();
  }

  _fit(redraw) {
    const pad = 8;
    const top = this.sections.length > 1 ? 1.2 : 0; // room for the first section's name
    const s = Math.max(0.5, Math.min((this.cssW - 2 * pad) / this.cols, (this.cssH - 2 * pad) / (this.rows + top)));
    this.fitScale = s;
    this.view = { s, tx: (this.cssW - this.cols * s) / 2, ty: (this.cssH - (this.rows - top) * s) / 2 };
    if (redraw) this.updateAll();
  }

  _resize() {
    if (!this.store) return;
    if (this.mode === "dom") {
      const w = this.root.clientWidth || 800;
      let cell = w / (this.cols + 3);
      if (this.opts.fit === "contain") {
        const h = Math.max(200, this.root.clientHeight - 40);
        cell = Math.min(cell, h / (this.rows + 1.5));
        cell = Math.max(6, Math.min(64, cell));
      } else {
        cell = Math.max(this.opts.interactive && TOUCH ? TOUCH_CELL : 16, Math.min(40, cell));
      }
      const px = `${Math.floor(cell * 10) / 10}px`;
      this.plane.style.setProperty("--cell", px);
      this.rail.style.setProperty("--cell", px);
      this.root.classList.toggle("seats-small", cell < 18);
      // wider than the screen: say so, and keep the row letters in view
      const wide = this.plane.scrollWidth > this.scroller.clientWidth + 1;
      this.scroller.classList.toggle("is-wide", wide);
      this.root.classList.toggle("map-wide", wide);
      return;
    }
    const wrap = this.canvasWrap;
    const cssW = wrap.clientWidth || 800;
    let cssH;
    if (this.opts.fit === "contain") cssH = Math.max(240, wrap.clientHeight || 600);
    else cssH = Math.max(320, Math.min(Math.round(window.innerHeight * 0.7), Math.round((cssW * (this.rows + 2)) / (this.cols + 2))));
    if (cssW === this.cssW && cssH === this.cssH) return;
    const dpr = Math.min(2, window.devicePixelRatio || 1);
    const first = this.cssW === undefined;
    this.cssW = cssW;
    this.cssH = cssH;
    this.canvas.style.height = `${cssH}px`;
    this.canvas.width = Math.round(cssW * dpr);
    this.canvas.height = Math.round(cssH * dpr);
    this.ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    // keep a zoom the customer chose; otherwise fit the whole venue again
    const zoomed = !first && this.view.s > this.fitScale * 1.01;
    const keep = zoomed ? { ...this.view } : null;
    this._fit(false);
    if (keep) this.view = keep;
    this.updateAll();
  }

  _fillFor(k, i) {
    switch (k & 7) {
      case AVAILABLE:
        return PALETTE[this.catIndex[i]];
      case HELD:
        return HELD_FILL;
      case BOOKED:
        return BOOKED_FILL;
      case BLOCKED:
        return BLOCKED_FILL;
      case RESERVED:
        return RESERVED_FILL;
      case 3:
        return PALETTE[this.catIndex[i]];
      case 5:
        return OWNED_FILL;
      default:
        return MINE_FILL;
    }
  }

  _flushCanvas(full) {
    const ctx = this.ctx;
    const s = this.store;
    const v = this.view;
    const size = v.s;
    const gap = size >= 4 ? size * 0.18 : size >= 2 ? 0.5 : 0;
    const box = size - gap;
    const seats = full ? null : this.dirtyList;
    const count = full ? s.count : this.dirtyCount;
    if (full) {
      ctx.fillStyle = BG;
      ctx.fillRect(0, 0, this.cssW, this.cssH);
      this._drawSectionLabels();
    }
    // group by fill colour to keep canvas state changes few
    const held = [];
    const booked = [];
    const marks = [];
    const rings = [];
    const bars = []; // blocked
    const dots = []; // reserved
    let lastFill = "";
    for (let n = 0; n < count; n++) {
      const i = full ? n : seats[n];
      const px = v.tx + (s.x[i] - this.minX) * size;
      const py = v.ty + (s.y[i] - this.minY) * size;
      if (px + size < 0 || py + size < 0 || px > this.cssW || py > this.cssH) {
        this.rendered[i] = 255;
        continue;
      }
      const k = this._key(i);
      this.rendered[i] = k;
      if (!full) {
        ctx.fillStyle = BG;
        ctx.fillRect(px - 0.5, py - 0.5, size + 1, size + 1);
        lastFill = BG;
      }
      const fill = this._fillFor(k, i);
      if (fill !== lastFill) {
        ctx.fillStyle = fill;
        lastFill = fill;
      }
      ctx.fillRect(px + gap / 2, py + gap / 2, box, box);
      const kk = k & 7;
      if (kk === HELD || kk === 4) held.push(px + gap / 2, py + gap / 2, kk);
      else if (kk === BOOKED || kk === 5) booked.push(px + gap / 2, py + gap / 2);
      else if (kk === 3) marks.push(px + gap / 2, py + gap / 2);
      else if (kk === BLOCKED) bars.push(px + gap / 2, py + gap / 2);
      else if (kk === RESERVED) dots.push(px + gap / 2, py + gap / 2);
      if (k & 8) rings.push(px, py);
    }
    // held: diagonal stripes (pattern, not colour only)
    if (held.length && box >= 3) {
      ctx.beginPath();
      for (let n = 0; n < held.length; n += 3) {
        const x = held[n], y = held[n + 1];
        ctx.moveTo(x, y + box);
        ctx.lineTo(x + box, y);
        if (box >= 8) {
          ctx.moveTo(x, y + box / 2);
          ctx.lineTo(x + box / 2, y);
          ctx.moveTo(x + box / 2, y + box);
          ctx.lineTo(x + box, y + box / 2);
        }
      }
      ctx.strokeStyle = HELD_LINE;
      ctx.lineWidth = Math.max(1, box / 8);
      ctx.stroke();
    }
    // blocked: a white bar; reserved: a white dot (shapes, not colour only)
    if ((bars.length || dots.length) && box >= 5) {
      ctx.fillStyle = "#ffffff";
      for (let n = 0; n < bars.length; n += 2) ctx.fillRect(bars[n] + box * 0.2, bars[n + 1] + box * 0.42, box * 0.6, box * 0.16);
      ctx.beginPath();
      for (let n = 0; n < dots.length; n += 2) {
        ctx.moveTo(dots[n] + box * 0.68, dots[n + 1] + box / 2);
        ctx.arc(dots[n] + box / 2, dots[n + 1] + box / 2, box * 0.18, 0, Math.PI * 2);
      }
      ctx.fill();
    }
    // booked: a cross
    if (booked.length && box >= 5) {
      ctx.beginPath();
      const m = box * 0.25;
      for (let n = 0; n < booked.length; n += 2) {
        const x = booked[n], y = booked[n + 1];
        ctx.moveTo(x + m, y + m);
        ctx.lineTo(x + box - m, y + box - m);
        ctx.moveTo(x + box - m, y + m);
        ctx.lineTo(x + m, y + box - m);
      }
      ctx.strokeStyle = "#ffffff";
      ctx.lineWidth = Math.max(1, box / 9);
      ctx.stroke();
    }
    // selected: a tick
    if (marks.length && box >= 5) {
      ctx.beginPath();
      for (let n = 0; n < marks.length; n += 2) {
        const x = marks[n], y = marks[n + 1];
        ctx.moveTo(x + box * 0.22, y + box * 0.52);
        ctx.lineTo(x + box * 0.42, y + box * 0.72);
        ctx.lineTo(x + box * 0.78, y + box * 0.3);
      }
      ctx.strokeStyle = "#ffffff";
      ctx.lineWidth = Math.max(1.2, box / 7);
      ctx.stroke();
    }
    if (held.length && box >= 3) {
      // outline the seats held for this customer
      ctx.beginPath();
      for (let n = 0; n < held.length; n += 3) if (held[n + 2] === 4) ctx.rect(held[n], held[n + 1], box, box);
      ctx.strokeStyle = MINE_LINE;
      ctx.lineWidth = Math.max(1, box / 8);
      ctx.stroke();
    }
    if (rings.length) {
      // the focus ring: amber outside, dark inside, as on DOM seats (within the seat's cell,
      // which a partial redraw clears)
      for (const [colour, width, inset] of [[FOCUS_OUTER, 2.5, 1.25], [FOCUS, 2, 3.5]]) {
        ctx.beginPath();
        for (let n = 0; n < rings.length; n += 2) ctx.rect(rings[n] + inset, rings[n + 1] + inset, size - 2 * inset, size - 2 * inset);
        ctx.strokeStyle = colour;
        ctx.lineWidth = width;
        ctx.stroke();
      }
    }
    if (full) this._drawRowLabels();
    if (this._labelDue === undefined || full) this._labelDue = 0;
    if (++this._labelDue > 30 || full) {
      this._labelDue = 0;
      this._canvasLabel();
    }
    if (this.picker) this._refreshPicker(full);
  }

  _drawSectionLabels() {
    const v = this.view;
    if (v.s < 5 || this.sections.length < 2) return;
    const ctx = this.ctx;
    const least = this.opts.minText || 10; // a kiosk asks for text readable across a room
    ctx.fillStyle = "#475569";
    ctx.font = `600 ${Math.min(Math.max(16, least), Math.max(least, v.s * 0.9))}px system-ui, sans-serif`;
    ctx.textBaseline = "bottom";
    ctx.textAlign = "left";
    for (const sec of this.sections) {
      ctx.fillText(sec.name, v.tx + (sec.minX - this.minX) * v.s, v.ty + (sec.minY - this.minY) * v.s - 2);
    }
  }

  // Row letters beside each row once the rows are tall enough to carry them (zoomed in),
  // left of the row's first seat, or at the left edge while that seat is scrolled away.
  _drawRowLabels() {
    const v = this.view;
    const size = Math.min(18, v.s * 0.75);
    if (size < Math.max(9, this.opts.minText || 0)) return;
    const ctx = this.ctx;
    const s = this.store;
    ctx.font = `700 ${size}px system-ui, sans-serif`;
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    const pad = size * 1.6;
    for (const row of this.rowList) {
      const first = row[0];
      const y = v.ty + (s.y[first] - this.minY + 0.5) * v.s;
      if (y < 0 || y > this.cssH) continue;
      const x = Math.max(pad, v.tx + (s.x[first] - this.minX) * v.s - 3);
      if (x - pad > this.cssW) continue;
      const text = splitLabel(s.labels[first])[0];
      ctx.fillStyle = "rgb(255 255 255 / 85%)";
      ctx.fillRect(x - pad + 2, y - size * 0.6, pad - 2, size * 1.2);
      ctx.fillStyle = "#1e293b";
      ctx.fillText(text, x - 1, y);
    }
  }

  // ---- section / row picker (keyboard and screen reader path for big venues) ----

  _buildPicker() {
    const s = this.store;
    const secSel = el("select", { id: "pick-section" });
    const rowSel = el("select", { id: "pick-row" });
    this.sections.forEach((sec, k) => secSel.append(el("option", { value: String(k) }, `${sec.name} (${sec.rows.length} rows)`)));
    const seatsBox = el("div", { class: "row-seats", role: "group" });
    const title = el("h3", { class: "picker-title", id: "picker-title" }, "Choose by row");
    this.picker = { secSel, rowSel, seatsBox, row: -1, buttons: [] };
    const fillRows = () => {
      const sec = this.sections[Number(secSel.value)];
      rowSel.replaceChildren(
        ...sec.rows.map((ri) => {
          const r = this.rowList[ri];
          return el("option", { value: String(ri) }, `Row ${splitLabel(s.labels[r[0]])[0]} · ${r.length} seats`);
        }),
      );
    };
    secSel.addEventListener("change", () => {
      fillRows();
      this.showRow(Number(rowSel.value), -1, { focus: false });
    });
    rowSel.addEventListener("change", () => this.showRow(Number(rowSel.value), -1, { focus: false }));
    seatsBox.addEventListener("click", (e) => {
      const b = e.target.closest(".seat");
      if (b) this.opts.onActivate(Number(b.dataset.i));
    });
    seatsBox.addEventListener("keydown", (e) => {
      const b = e.target.closest(".seat");
      if (!b) return;
      const i = Number(b.dataset.i);
      if (e.key !== "ArrowLeft" && e.key !== "ArrowRight" && e.key !== "Home" && e.key !== "End") return;
      e.preventDefault();
      const next = this._neighbour(i, e.key);
      const nb = this.picker.buttons.find((x) => Number(x.dataset.i) === next);
      if (nb) nb.focus();
    });
    seatsBox.addEventListener("focusin", (e) => {
      const b = e.target.closest(".seat");
      if (!b) return;
      const i = Number(b.dataset.i);
      const old = this.cursor;
      this.cursor = i;
      this.update([old, i].filter((x) => x >= 0));
      this.opts.onHover(i);
    });
    fillRows();
    this.root.append(
      el(
        "section",
        { class: "row-picker", "aria-labelledby": "picker-title" },
        title,
        el("div", { class: "picker-controls" }, el("label", { for: "pick-section" }, "Section"), secSel, el("label", { for: "pick-row" }, "Row"), rowSel),
        seatsBox,
      ),
    );
    this.showRow(Number(rowSel.value), -1, { focus: false, recenter: false });
  }

  showRow(ri, seat = -1, { focus = true, recenter = true } = {}) {
    const p = this.picker;
    if (!p || ri < 0) return;
    const s = this.store;
    const row = this.rowList[ri];
    const secIdx = this.sections.findIndex((sec) => sec.rows.includes(ri));
    if (String(secIdx) !== p.secSel.value) {
      p.secSel.value = String(secIdx);
      p.secSel.dispatchEvent(new Event("change"));
    }
    p.rowSel.value = String(ri);
    if (p.row !== ri) {
      p.row = ri;
      const rowName = splitLabel(s.labels[row[0]])[0];
      p.seatsBox.setAttribute("aria-label", `Row ${rowName} seats. Left and right arrows move, Enter picks.`);
      p.buttons = row.map((i, idx) => {
        const b = el("button", { type: "button", class: "seat seat-inline", "data-seat": s.labels[i], "data-i": String(i), tabindex: idx === 0 ? "0" : "-1" }, splitLabel(s.labels[i])[1]);
        b.style.setProperty("--cat", PALETTE[this.catIndex[i]]);
        return b;
      });
      p.seatsBox.replaceChildren(...p.buttons);
      p.rendered = new Uint8Array(row.length).fill(255);
      this._refreshPicker(true);
    }
    if (recenter && this.view && this.view.s < 10) {
      // zoom so the row is readable, centred
      const v = this.view;
      const target = Math.min(24, Math.max(v.s, 14));
      const i0 = row[Math.floor(row.length / 2)];
      v.s = target;
      v.tx = this.cssW / 2 - (s.x[i0] - this.minX) * target;
      v.ty = this.cssH / 2 - (s.y[i0] - this.minY) * target;
      this.updateAll();
    }
    if (seat >= 0) {
      const old = this.cursor;
      this.cursor = seat;
      this.update([old, seat].filter((x) => x >= 0));
      const b = p.buttons.find((x) => Number(x.dataset.i) === seat);
      if (b) {
        for (const x of p.buttons) x.tabIndex = -1;
        b.tabIndex = 0;
        if (focus) b.focus();
      }
    }
  }

  _refreshPicker(full) {
    const p = this.picker;
    if (!p || p.row < 0) return;
    const row = this.rowList[p.row];
    for (let idx = 0; idx < row.length; idx++) {
      const i = row[idx];
      if (!full && !this.dirtyFlag[i]) continue;
      const k = this._key(i) & 7;
      if (p.rendered[idx] === k) continue;
      p.rendered[idx] = k;
      const b = p.buttons[idx];
      b.dataset.status = STATUS_ATTR[this.store.status[i]];
      b.classList.toggle("is-selected", k === 3);
      b.classList.toggle("is-mine", k === 4);
      b.classList.toggle("is-owned", k === 5);
      const state = k === 4 ? MINE : k === 5 ? OWNED : k === 3 ? SELECTED : NONE;
      b.setAttribute("aria-label", seatName(this.store, i, state));
      b.setAttribute("aria-pressed", k === 3 ? "true" : "false");
      b.setAttribute("aria-disabled", this.store.status[i] !== AVAILABLE && k < 4 ? "true" : "false");
    }
  }
}
