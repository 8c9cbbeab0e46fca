// Arrow-key navigation among seats, the same in the DOM seat grid and the row picker:
// left/right/Home/End within a row, up/down (and PageUp/PageDown, five rows) to the seat
// nearest in x in the next row.

// the keys that stay within the row (all a row picker's buttons need)
export const ROW_KEYS = new Set(["ArrowLeft", "ArrowRight", "Home", "End"]);

// the seat a key moves to from seat i; i itself at an edge; -1 for a key that does not move
export function neighbour(geometry, i, key) {
  const { rowList } = geometry;
  const r = geometry.rowOf[i], p = geometry.posInRow[i];
  const row = rowList[r];
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
      const nr = Math.max(0, Math.min(rowList.length - 1, r + step));
      if (nr === r) return i;
      const xs = geometry.store.x;
      const x = xs[i];
      let best = rowList[nr][0], bd = Infinity;
      for (const j of rowList[nr]) {
        const d = Math.abs(xs[j] - x);
        if (d < bd) (bd = d), (best = j);
      }
      return best;
    }
    default:
      return -1;
  }
}
