// The legend under a map: its swatches use the same classes as the seats, so they show the
// same shape and pattern (not colour only).

import { el, money } from "../util.js";
import { categoryColours, PALETTE } from "./palette.js";

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
