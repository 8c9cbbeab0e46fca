// Bigger venues than DOM_LIMIT: one <canvas> with one set of listeners (hit testing by x/y
// through SeatGeometry's grid, drag to pan, Ctrl + scroll or pinch to zoom), plus, when
// interactive, a RowPicker: real buttons for one chosen row, for the keyboard and screen
// readers. Only the seats that changed are drawn again, unless the view moved.

import { el } from "../util.js";
import { clear, paintRowLabels, paintSeats, paintSectionLabels } from "./canvas-paint.js";
import { paletteIndexes } from "./palette.js";
import { RowPicker } from "./row-picker.js";
import { TOUCH } from "./seats.js";
import { Viewport } from "./viewport.js";

// the canvas's accessible name counts every seat: refresh it every this many partial frames
const LABEL_EVERY = 30;

export class CanvasRenderer {
  // seats: what SeatMap gives every renderer (see seatmap.js)
  constructor(root, { store, geometry, opts, lookOf, redraw, redrawAll }) {
    this.root = root;
    this.store = store;
    this.geometry = geometry;
    this.opts = opts;
    this.lookOf = lookOf;
    this.redraw = redraw;
    this.redrawAll = redrawAll;
    this.colour = paletteIndexes(store);
    this.view = new Viewport();
    this.width = undefined; // CSS px, set by resize()
    this.height = undefined;
    this.hover = -1; // the seat under the pointer
    this.cursor = -1; // the seat focused in the row picker
    this.labelDue = 0;
    this.picker = null;
    this._build();
  }

  _build() {
    const interactive = this.opts.interactive;
    this.canvas = el("canvas", { class: "seat-canvas", role: "img" });
    this.ctx = this.canvas.getContext("2d", { alpha: false });
    this.wrap = el("div", { class: "canvas-wrap" }, this.canvas);
    this.root.append(el("div", { class: "stage", "aria-hidden": "true" }, "Stage"));
    if (interactive) {
      const zoom = (f) => () => this._zoomAt(f, this.width / 2, this.height / 2);
      const fit = () => {
        this.view.fit(this.geometry, this.width, this.height);
        this._viewChanged();
      };
      this.root.append(
        el(
          "div",
          { class: "canvas-toolbar" },
          el("button", { type: "button", class: "btn btn-small btn-ghost", onclick: zoom(1 / 1.5), "aria-label": "Zoom out" }, "−"),
          el("button", { type: "button", class: "btn btn-small btn-ghost", onclick: fit, "aria-label": "Fit the whole venue" }, "Fit"),
          el("button", { type: "button", class: "btn btn-small btn-ghost", onclick: zoom(1.5), "aria-label": "Zoom in" }, "+"),
          el("span", { class: "hint" }, TOUCH ? "Drag to move · pinch to zoom · or choose a row below" : "Drag to move · Ctrl + scroll to zoom · or choose a row below"),
        ),
      );
    }
    this.root.append(this.wrap);
    this._label();
    if (interactive) {
      this._listen();
      this.picker = new RowPicker({
        store: this.store,
        geometry: this.geometry,
        colour: this.colour,
        lookOf: this.lookOf,
        onActivate: (i) => this.opts.onActivate(i),
        onRow: (ri) => this.showRow(ri, -1, { focus: false }),
        onFocusSeat: (i) => {
          this._moveCursor(i);
          this.opts.onHover(i);
        },
      });
      this.root.append(this.picker.element());
      this.showRow(this.picker.firstRow(), -1, { focus: false, recenter: false });
    }
  }

  _label() {
    const c = this.store.counts();
    this.canvas.setAttribute("aria-label", `Seat map of ${c.total.toLocaleString()} seats: ${c.AVAILABLE.toLocaleString()} available, ${c.HELD.toLocaleString()} held, ${c.BOOKED.toLocaleString()} sold`);
  }

  // every change of the view comes through here: keep the venue on screen, draw it all
  _viewChanged() {
    this.view.clamp(this.geometry, this.width, this.height);
    this.redrawAll();
  }

  _zoomAt(f, cx, cy) {
    this.view.zoomAt(f, cx, cy);
    this._viewChanged();
  }

  _moveCursor(i) {
    const old = this.cursor;
    this.cursor = i;
    this.redraw([old, i].filter((x) => x >= 0));
  }

  _seatUnder(e) {
    const r = this.canvas.getBoundingClientRect();
    const [ux, uy] = this.view.toGrid(e.clientX - r.left, e.clientY - r.top);
    return this.geometry.seatAt(ux, uy);
  }

  // a click picks, a drag pans, two fingers pinch, Ctrl + wheel zooms, hovering names a seat
  _listen() {
    const cv = this.canvas;
    const view = this.view;
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
      down = { x: e.clientX, y: e.clientY, tx: view.tx, ty: view.ty, moved: false };
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
        view.tx += now.mx - pinch.mx;
        view.ty += now.my - pinch.my;
        this._zoomAt(now.d / pinch.d, now.mx, now.my);
        pinch = now;
        return;
      }
      if (down) {
        const dx = e.clientX - down.x, dy = e.clientY - down.y;
        if (down.moved || Math.abs(dx) + Math.abs(dy) > 5) {
          down.moved = true;
          view.tx = down.tx + dx;
          view.ty = down.ty + dy;
          this._viewChanged();
          return;
        }
      }
      const i = this._seatUnder(e);
      if (i !== this.hover) {
        const old = this.hover;
        this.hover = i;
        this.redraw([old, i].filter((x) => x >= 0));
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
      const i = this._seatUnder(e);
      if (i >= 0) {
        this.showRow(this.geometry.rowOf[i], i, { focus: false, recenter: false });
        this.opts.onActivate(i);
      }
    });
    cv.addEventListener("pointerleave", () => {
      if (this.hover >= 0) {
        const old = this.hover;
        this.hover = -1;
        this.redraw([old]);
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

  // Row ri in the picker; with a seat, that seat focused there (focus: the keyboard's focus
  // too) and ringed on the canvas. recenter: zoom in until the row is readable.
  showRow(ri, seat = -1, { focus = true, recenter = true } = {}) {
    if (!this.picker || ri < 0) return;
    if (seat >= 0) this._moveCursor(seat);
    this.picker.showRow(ri, seat, focus);
    const v = this.view;
    if (recenter && v.s < 10) {
      const s = this.store;
      const g = this.geometry;
      const row = g.rowList[ri];
      const target = Math.min(24, Math.max(v.s, 14));
      const i0 = row[Math.floor(row.length / 2)];
      v.s = target;
      v.tx = this.width / 2 - (s.x[i0] - g.minX) * target;
      v.ty = this.height / 2 - (s.y[i0] - g.minY) * target;
      this._viewChanged();
    }
  }

  resize() {
    const g = this.geometry;
    const width = this.wrap.clientWidth || 800;
    let height;
    if (this.opts.fit === "contain") height = Math.max(240, this.wrap.clientHeight || 600);
    else height = Math.max(320, Math.min(Math.round(window.innerHeight * 0.7), Math.round((width * (g.rows + 2)) / (g.cols + 2))));
    if (width === this.width && height === this.height) return;
    const dpr = Math.min(2, window.devicePixelRatio || 1);
    const first = this.width === undefined;
    this.width = width;
    this.height = height;
    this.canvas.style.height = `${height}px`;
    this.canvas.width = Math.round(width * dpr);
    this.canvas.height = Math.round(height * dpr);
    this.ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    // keep a zoom the customer chose; otherwise fit the whole venue again
    const v = this.view;
    const keep = !first && v.zoomedIn() ? { s: v.s, tx: v.tx, ty: v.ty } : null;
    v.fit(g, width, height);
    if (keep) Object.assign(v, keep);
    this._viewChanged();
  }

  draw(dirty) {
    const scene = {
      store: this.store,
      geometry: this.geometry,
      view: this.view,
      width: this.width,
      height: this.height,
      colour: this.colour,
      lookOf: this.lookOf,
      hover: this.hover,
      cursor: this.cursor,
      minText: this.opts.minText,
    };
    const full = dirty.all;
    if (full) {
      clear(this.ctx, this.width, this.height);
      paintSectionLabels(this.ctx, scene);
    }
    paintSeats(this.ctx, scene, dirty);
    if (full) paintRowLabels(this.ctx, scene);
    if (full) this.labelDue = 0;
    if (++this.labelDue > LABEL_EVERY || full) {
      this.labelDue = 0;
      this._label();
    }
    if (this.picker) this.picker.draw(dirty);
  }
}
