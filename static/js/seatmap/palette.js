// Category colours, in the order the categories first appear on the map.

// dark enough for 3:1 against white (non-text contrast)
export const PALETTE = ["#2563eb", "#7c3aed", "#0f766e", "#c2410c", "#be185d", "#4d7c0f", "#0369a1", "#a16207"];

export function categoryColours(store) {
  const map = new Map();
  for (let i = 0; i < store.count; i++) {
    const c = store.category[i];
    if (!map.has(c)) map.set(c, { index: map.size, colour: PALETTE[map.size % PALETTE.length], price: store.price[i], available: 0, total: 0 });
  }
  return map;
}

// each seat's colour as an index into PALETTE, looked up once per layout (not per frame)
export function paletteIndexes(store) {
  const cats = categoryColours(store);
  const index = new Uint8Array(store.count);
  for (let i = 0; i < store.count; i++) index[i] = cats.get(store.category[i]).index % PALETTE.length;
  return index;
}
