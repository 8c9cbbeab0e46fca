// The seat map of the map page, the kiosk and the box office: picks a renderer for the
// venue's size and batches changes into one requestAnimationFrame.
//
// Up to DOM_LIMIT seats: seatmap/dom-renderer.js, one element per seat. Bigger venues:
// seatmap/canvas-renderer.js, one canvas plus a row picker (seatmap/row-picker.js). Both
// share seatmap/geometry.js (rows, sections, hit testing), seatmap/keyboard.js (arrow keys)
// and seatmap/seats.js (a seat's look and accessible name).

import { STATUS_NAMES } from "./live.js";
import { CanvasRenderer } from "./seatmap/canvas-renderer.js";
import { DirtySeats } from "./seatmap/dirty-seats.js";
import { DomRenderer } from "./seatmap/dom-renderer.js";
import { SeatGeometry } from "./seatmap/geometry.js";
import { NONE, seatLook } from "./seatmap/seats.js";

export { categoryColours } from "./seatmap/palette.js";
export { legend } from "./seatmap/legend.js";
export { NONE, SELECTED, MINE, OWNED, TOUCH, seatName, splitLabel } from "./seatmap/seats.js";

// past this many seats, elements cost too much to build and lay out: the canvas draws them
export const DOM_LIMIT = 2000;

export class SeatMap {
  // opts: interactive (bool), fit ("width" | "contain"), mode ("auto" | "dom" | "canvas"),
  // minText (px, the least text size on a canvas), seatState(i) -> NONE | SELECTED | MINE |
  // OWNED, onActivate(i), onHover(i | -1)
  constructor(root, opts = {}) {
    this.root = root;
    this.opts = { interactive: true, fit: "width", mode: "auto", seatState: () => NONE, onActivate: () => {}, onHover: () => {}, ...opts };
    this.store = null;
    this.geometry = null;
    this.renderer = null;
    this.dirty = null;
    this.raf = 0;
    this.resizeObs = new ResizeObserver(() => this.renderer?.resize());
    this.resizeObs.observe(root);
    this.firstRender = null;
    this.frameHook = null; // (ms spent drawing, full) -> void, for benchmarks
  }

  destroy() {
    cancelAnimationFrame(this.raf);
    this.resizeObs.disconnect();
    this.root.replaceChildren();
  }

  setStore(store) {
    const n = store.count;
    const mode = this.opts.mode === "auto" ? (n <= DOM_LIMIT ? "dom" : "canvas") : this.opts.mode;
    this.store = store;
    this.geometry = new SeatGeometry(store);
    this.dirty = new DirtySeats(n);
    this.mode = mode;
    this.root.replaceChildren();
    this.root.dataset.mode = mode;
    this.root.dataset.seatCount = String(n);
    // A renderer is built with these, draws when asked (draw(dirty): the seats in a
    // DirtySeats, all of them when dirty.all) and fits itself to root's size (resize());
    // lookOf(i) is a seat's look (seats.js); redraw and redrawAll ask for a frame.
    const { seatState } = this.opts;
    const seats = {
      store,
      geometry: this.geometry,
      opts: this.opts,
      lookOf: (i) => seatLook(store, i, seatState(i)),
      redraw: (indices) => this.update(indices),
      redrawAll: () => this.updateAll(),
    };
    this.renderer = mode === "dom" ? new DomRenderer(this.root, seats) : new CanvasRenderer(this.root, seats);
    this.renderer.resize();
    this.updateAll();
  }

  statusOf(label) {
    const i = this.store ? this.store.index.get(label) : undefined;
    return i === undefined ? null : STATUS_NAMES[this.store.status[i]];
  }

  // these seats changed: draw them again at the next frame
  update(indices) {
    if (!this.store) return;
    this.dirty.add(indices);
    this._schedule();
  }

  updateAll() {
    if (!this.store) return;
    this.dirty.addAll();
    this._schedule();
  }

  _schedule() {
    if (!this.raf) this.raf = requestAnimationFrame(() => this._flush());
  }

  _flush() {
    this.raf = 0;
    if (!this.store) return;
    const t0 = performance.now();
    const full = this.dirty.all;
    this.renderer.draw(this.dirty);
    this.dirty.clear();
    const spent = performance.now() - t0;
    if (this.firstRender === null) {
      this.firstRender = performance.now();
      this.root.dataset.rendered = "1";
      performance.mark("seatmap-rendered");
    }
    if (this.frameHook) this.frameHook(spent, full);
  }
}
