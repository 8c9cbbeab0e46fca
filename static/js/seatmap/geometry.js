// Where the seats are, computed once per layout and shared by every renderer: the grid the
// seats sit on, the rows (seats sharing a row label and a y, in x order), the sections in
// map order, and hit testing from a grid position to a seat.

import { splitLabel } from "./seats.js";

// above this many grid cells the hit-test grid would cost more memory than a scan saves
const GRID_LIMIT = 4_000_000;

export class SeatGeometry {
  constructor(store) {
    const s = store;
    this.store = store;
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
    this._rows();
    this._sections();
    this._grid();
  }

  _rows() {
    const s = this.store;
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
  }

  // sections, in map order, with their rows and top-left corner
  _sections() {
    const s = this.store;
    this.sections = [];
    this.sectionOfRow = new Int32Array(this.rowList.length);
    const byName = new Map();
    this.rowList.forEach((r, ri) => {
      const name = s.section[r[0]] || "Seats";
      let sec = byName.get(name);
      if (!sec) {
        sec = { name, index: this.sections.length, rows: [], minX: Infinity, minY: Infinity };
        byName.set(name, sec);
        this.sections.push(sec);
      }
      sec.rows.push(ri);
      this.sectionOfRow[ri] = sec.index;
      for (const i of r) {
        sec.minX = Math.min(sec.minX, s.x[i]);
        sec.minY = Math.min(sec.minY, s.y[i]);
      }
    });
  }

  // the seat in each grid cell, for hit testing in O(1)
  _grid() {
    const s = this.store;
    this.grid = null;
    if (this.cols * this.rows > GRID_LIMIT) return;
    this.grid = new Int32Array(this.cols * this.rows).fill(-1);
    for (let i = 0; i < s.count; i++) this.grid[Math.floor(s.y[i] - this.minY) * this.cols + Math.floor(s.x[i] - this.minX)] = i;
  }

  // the row's letters, e.g. "C" for seat C52
  rowName(ri) {
    return splitLabel(this.store.labels[this.rowList[ri][0]])[0];
  }

  // grid units from the top-left seat (x and y as fractions of a seat)
  seatAt(ux, uy) {
    const cx = Math.floor(ux), cy = Math.floor(uy);
    if (cx < 0 || cy < 0 || cx >= this.cols || cy >= this.rows) return -1;
    if (this.grid) return this.grid[cy * this.cols + cx];
    const s = this.store;
    for (let i = 0; i < s.count; i++) if (Math.floor(s.x[i] - this.minX) === cx && Math.floor(s.y[i] - this.minY) === cy) return i;
    return -1;
  }
}
