// Up to DOM_LIMIT seats: one element per seat (a <button> when interactive) carrying
// data-seat, data-status and an accessible name, placed on a CSS grid by --x/--y; one
// delegated listener per event type for all the seats, and a roving tabindex (one seat in
// the tab order, arrow keys move it).

import { AVAILABLE } from "../live.js";
import { el } from "../util.js";
import { neighbour } from "./keyboard.js";
import { PALETTE, paletteIndexes } from "./palette.js";
import { TOUCH, paintSeatElement } from "./seats.js";

const TOUCH_CELL = 30; // a seat is 0.82 of its cell: 24.6 px

export class DomRenderer {
  // seats: what SeatMap gives every renderer (see seatmap.js)
  constructor(root, { store, geometry, opts, lookOf }) {
    this.root = root;
    this.store = store;
    this.geometry = geometry;
    this.opts = opts;
    this.lookOf = lookOf;
    this.drawn = new Uint8Array(store.count).fill(255); // the look last drawn per seat
    this.roving = -1;
    this._build();
  }

  _build() {
    const s = this.store;
    const g = this.geometry;
    const interactive = this.opts.interactive;
    const colour = paletteIndexes(s);
    const plane = el("div", { class: "seat-plane" });
    this.plane = plane;
    plane.style.setProperty("--cols", g.cols + 3);
    plane.style.setProperty("--rows", g.rows + 1);
    const frag = document.createDocumentFragment();
    for (const sec of g.sections) {
      if (g.sections.length > 1 || sec.name !== "Seats") {
        const lab = el("span", { class: "section-label", "aria-hidden": "true" }, sec.name);
        lab.style.setProperty("--x", sec.minX - g.minX + 1.5);
        lab.style.setProperty("--y", sec.minY - g.minY);
        frag.append(lab);
      }
    }
    g.rowList.forEach((r, ri) => {
      const first = r[0];
      const lab = el("span", { class: "row-label", "aria-hidden": "true" }, g.rowName(ri));
      lab.style.setProperty("--x", s.x[first] - g.minX + 0.35);
      lab.style.setProperty("--y", s.y[first] - g.minY + 1);
      frag.append(lab);
    });
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
      node.style.setProperty("--x", s.x[i] - g.minX + 1.5);
      node.style.setProperty("--y", s.y[i] - g.minY + 1);
      node.style.setProperty("--cat", PALETTE[colour[i]]);
      this.els[i] = node;
      frag.append(node);
    }
    plane.append(frag);
    // row letters that stay at the left edge while the rows scroll sideways
    const rail = el("div", { class: "row-rail", "aria-hidden": "true" });
    g.rowList.forEach((r, ri) => {
      const lab = el("span", { class: "row-label" }, g.rowName(ri));
      lab.style.setProperty("--y", s.y[r[0]] - g.minY + 1);
      rail.append(lab);
    });
    this.rail = rail;
    // (the track spans the rows' whole width, so the sticky rail stays put to the end)
    const wrap = el("div", { class: "seat-scroll" }, el("div", { class: "seat-track" }, rail, plane));
    this.scroller = wrap;
    if (interactive) {
      plane.setAttribute("role", "group");
      plane.setAttribute("aria-label", `Seat map, ${s.count} seats. Arrow keys move between seats and rows, Enter or Space picks a seat.`);
      if (s.count) this.els[this._firstAvailable()].tabIndex = 0;
      this._listen(plane);
    } else {
      wrap.setAttribute("role", "img");
      this.summary = wrap;
      this._summarise();
    }
    this.root.append(el("div", { class: "stage", "aria-hidden": "true" }, "Stage"), wrap);
  }

  _listen(plane) {
    const seatOf = (e) => {
      const b = e.target.closest(".seat");
      return b ? Number(b.dataset.i) : -1;
    };
    plane.addEventListener("click", (e) => {
      const i = seatOf(e);
      if (i < 0) return;
      this._setRoving(i);
      this.opts.onActivate(i);
    });
    plane.addEventListener("keydown", (e) => {
      const i = seatOf(e);
      if (i < 0) return;
      const next = neighbour(this.geometry, i, e.key);
      if (next < 0) return;
      e.preventDefault();
      this._focus(next);
    });
    for (const type of ["focusin", "pointerover"]) {
      plane.addEventListener(type, (e) => {
        const i = seatOf(e);
        if (i >= 0) this.opts.onHover(i);
      });
    }
  }

  _summarise() {
    const c = this.store.counts();
    this.summary.setAttribute("aria-label", `Seat map: ${c.AVAILABLE} of ${c.total} seats available, ${c.HELD} held, ${c.BOOKED} sold`);
  }

  _firstAvailable() {
    const s = this.store;
    for (let i = 0; i < s.count; i++) if (s.status[i] === AVAILABLE) return i;
    return 0;
  }

  _setRoving(i) {
    if (this.roving >= 0) this.els[this.roving].tabIndex = -1;
    else for (const e of this.plane.querySelectorAll('.seat[tabindex="0"]')) e.tabIndex = -1;
    this.roving = i;
    this.els[i].tabIndex = 0;
  }

  _focus(i) {
    this._setRoving(i);
    this.els[i].focus();
    this.els[i].scrollIntoView({ block: "nearest", inline: "nearest" });
  }

  _paint(i) {
    const look = this.lookOf(i);
    if (this.drawn[i] === look) return;
    this.drawn[i] = look;
    paintSeatElement(this.els[i], this.store, i, look, this.opts.interactive);
  }

  draw(dirty) {
    if (dirty.all) for (let i = 0; i < this.store.count; i++) this._paint(i);
    else for (let k = 0; k < dirty.count; k++) this._paint(dirty.list[k]);
    if (this.summary) this._summarise();
  }

  resize() {
    const g = this.geometry;
    const w = this.root.clientWidth || 800;
    let cell = w / (g.cols + 3);
    if (this.opts.fit === "contain") {
      const h = Math.max(200, this.root.clientHeight - 40);
      cell = Math.min(cell, h / (g.rows + 1.5));
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
  }
}
