// The canvas's pan and zoom: s CSS pixels per grid unit, and where the top-left seat's
// cell sits (tx, ty). Pure arithmetic on the geometry and the canvas size.

const PAD = 8; // CSS px kept clear around the venue
const MAX_SCALE = 48;

export class Viewport {
  constructor() {
    this.s = 1;
    this.tx = 0;
    this.ty = 0;
    this.fitScale = 1;
  }

  // room above the first row for the section names, in grid units
  static _top(geometry) {
    return geometry.sections.length > 1 ? 1.2 : 0;
  }

  // the whole venue, centred
  fit(geometry, width, height) {
    const top = Viewport._top(geometry);
    const s = Math.max(0.5, Math.min((width - 2 * PAD) / geometry.cols, (height - 2 * PAD) / (geometry.rows + top)));
    this.fitScale = s;
    this.s = s;
    this.tx = (width - geometry.cols * s) / 2;
    this.ty = (height - (geometry.rows - top) * s) / 2;
  }

  // keep the venue on screen: centred when it fits, edge to edge when it does not
  clamp(geometry, width, height) {
    const top = Viewport._top(geometry) * this.s;
    const w = geometry.cols * this.s, h = geometry.rows * this.s;
    if (w + 2 * PAD <= width) this.tx = (width - w) / 2;
    else this.tx = Math.min(PAD, Math.max(width - w - PAD, this.tx));
    if (h + top + 2 * PAD <= height) this.ty = (height - h + top) / 2;
    else this.ty = Math.min(PAD + top, Math.max(height - h - PAD, this.ty));
  }

  // zoom by f about the point (cx, cy) of the canvas, no further out than a little past fit
  zoomAt(f, cx, cy) {
    const s2 = Math.max(this.fitScale * 0.8, Math.min(MAX_SCALE, this.s * f));
    this.tx = cx - ((cx - this.tx) * s2) / this.s;
    this.ty = cy - ((cy - this.ty) * s2) / this.s;
    this.s = s2;
  }

  // a canvas point in grid units from the top-left seat (for SeatGeometry.seatAt)
  toGrid(px, py) {
    return [(px - this.tx) / this.s, (py - this.ty) / this.s];
  }

  zoomedIn() {
    return this.s > this.fitScale * 1.01;
  }
}
