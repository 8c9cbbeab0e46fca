// The seats to draw again at the next frame. Typed arrays sized once per layout: marking a
// seat is two array writes, with no allocation however many changes a burst brings.

export class DirtySeats {
  constructor(count) {
    this.total = count;
    this.list = new Int32Array(count);
    this.flag = new Uint8Array(count);
    this.count = 0;
    this.all = false;
  }

  add(indices) {
    if (this.all) return;
    for (const i of indices) {
      if (this.flag[i]) continue;
      this.flag[i] = 1;
      this.list[this.count++] = i;
    }
    // past a quarter of the venue one full pass is cheaper than the list
    if (this.count > this.total / 4) this.all = true;
  }

  addAll() {
    this.all = true;
  }

  has(i) {
    return this.all || this.flag[i] === 1;
  }

  clear() {
    for (let k = 0; k < this.count; k++) this.flag[this.list[k]] = 0;
    this.count = 0;
    this.all = false;
  }
}
