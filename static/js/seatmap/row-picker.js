// The keyboard and screen-reader path through a big venue drawn on a canvas: choose a
// section and a row, then the row's seats are real buttons (arrow keys move, Enter picks).
// Only the chosen row has buttons, so a 100,000-seat venue costs one row of elements.

import { el } from "../util.js";
import { neighbour, ROW_KEYS } from "./keyboard.js";
import { PALETTE } from "./palette.js";
import { paintSeatElement, splitLabel } from "./seats.js";

export class RowPicker {
  // onRow(ri): a row chosen from the lists; onFocusSeat(i): a seat button got the focus
  constructor({ store, geometry, colour, lookOf, onActivate, onRow, onFocusSeat }) {
    this.store = store;
    this.geometry = geometry;
    this.colour = colour; // PALETTE index per seat
    this.lookOf = lookOf;
    this.row = -1;
    this.buttons = [];
    this.drawn = new Uint8Array(0);
    this.sectionList = el("select", { id: "pick-section" });
    this.rowList = el("select", { id: "pick-row" });
    this.seatsBox = el("div", { class: "row-seats", role: "group" });
    geometry.sections.forEach((sec, k) => this.sectionList.append(el("option", { value: String(k) }, `${sec.name} (${sec.rows.length} rows)`)));
    this.sectionList.addEventListener("change", () => {
      this._fillRows();
      onRow(Number(this.rowList.value));
    });
    this.rowList.addEventListener("change", () => onRow(Number(this.rowList.value)));
    const seatOf = (e) => {
      const b = e.target.closest(".seat");
      return b ? Number(b.dataset.i) : -1;
    };
    this.seatsBox.addEventListener("click", (e) => {
      const i = seatOf(e);
      if (i >= 0) onActivate(i);
    });
    this.seatsBox.addEventListener("keydown", (e) => {
      const i = seatOf(e);
      if (i < 0 || !ROW_KEYS.has(e.key)) return;
      e.preventDefault();
      this._button(neighbour(geometry, i, e.key))?.focus();
    });
    this.seatsBox.addEventListener("focusin", (e) => {
      const i = seatOf(e);
      if (i >= 0) onFocusSeat(i);
    });
    this._fillRows();
  }

  element() {
    return el(
      "section",
      { class: "row-picker", "aria-labelledby": "picker-title" },
      el("h3", { class: "picker-title", id: "picker-title" }, "Choose by row"),
      el("div", { class: "picker-controls" }, el("label", { for: "pick-section" }, "Section"), this.sectionList, el("label", { for: "pick-row" }, "Row"), this.rowList),
      this.seatsBox,
    );
  }

  firstRow() {
    return Number(this.rowList.value);
  }

  _fillRows() {
    const g = this.geometry;
    const sec = g.sections[Number(this.sectionList.value)];
    this.rowList.replaceChildren(...sec.rows.map((ri) => el("option", { value: String(ri) }, `Row ${g.rowName(ri)} · ${g.rowList[ri].length} seats`)));
  }

  _button(i) {
    return this.buttons.find((b) => Number(b.dataset.i) === i);
  }

  // show row ri's seats as buttons; with a seat, make it the row's tab stop (and focus it)
  showRow(ri, seat = -1, focus = true) {
    const g = this.geometry;
    const sec = String(g.sectionOfRow[ri]);
    if (sec !== this.sectionList.value) {
      this.sectionList.value = sec;
      this._fillRows();
    }
    this.rowList.value = String(ri);
    if (this.row !== ri) {
      this.row = ri;
      const row = g.rowList[ri];
      const s = this.store;
      this.seatsBox.setAttribute("aria-label", `Row ${g.rowName(ri)} seats. Left and right arrows move, Enter picks.`);
      this.buttons = row.map((i, idx) => {
        const b = el("button", { type: "button", class: "seat seat-inline", "data-seat": s.labels[i], "data-i": String(i), tabindex: idx === 0 ? "0" : "-1" }, splitLabel(s.labels[i])[1]);
        b.style.setProperty("--cat", PALETTE[this.colour[i]]);
        return b;
      });
      this.seatsBox.replaceChildren(...this.buttons);
      this.drawn = new Uint8Array(row.length).fill(255);
      this.draw(null);
    }
    const b = seat >= 0 ? this._button(seat) : null;
    if (b) {
      for (const x of this.buttons) x.tabIndex = -1;
      b.tabIndex = 0;
      if (focus) b.focus();
    }
  }

  // the row's buttons again where their seats changed (dirty: DirtySeats; null: all)
  draw(dirty) {
    if (this.row < 0) return;
    const row = this.geometry.rowList[this.row];
    for (let idx = 0; idx < row.length; idx++) {
      const i = row[idx];
      if (dirty && !dirty.has(i)) continue;
      const look = this.lookOf(i);
      if (this.drawn[idx] === look) continue;
      this.drawn[idx] = look;
      paintSeatElement(this.buttons[idx], this.store, i, look, true);
    }
  }
}
