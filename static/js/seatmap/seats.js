// A seat's look and name, shared by every renderer (DOM seats, canvas, row picker).
//
// A seat's look is one small number, so a renderer compares it with what it drew last in a
// Uint8Array and skips the seats that did not change (a venue of 100,000 seats stays cheap):
// its status (live.js: 0-2, 6, 7), or this page's own state of it (3-5).

import { AVAILABLE, STATUS_NAMES } from "../live.js";
import { money } from "../util.js";

// what a page's seatState(i) answers
export const NONE = 0;
export const SELECTED = 1;
export const MINE = 2; // in this customer's hold
export const OWNED = 3; // booked by this customer

// looks beyond the statuses (clear of them: see live.js)
export const LOOK_SELECTED = 3;
export const LOOK_MINE = 4;
export const LOOK_OWNED = 5;

// a finger, not a mouse: seats get room for a fingertip (WCAG 2.5.8: 24 x 24 CSS px)
export const TOUCH = typeof matchMedia === "function" && matchMedia("(pointer: coarse)").matches;

const STATUS_WORD = ["available", "held by someone else", "booked", , , , "not for sale", "reserved"];

export function seatLook(store, i, state) {
  return state === MINE ? LOOK_MINE : state === OWNED ? LOOK_OWNED : state === SELECTED ? LOOK_SELECTED : store.status[i];
}

function stateOfLook(look) {
  return look === LOOK_MINE ? MINE : look === LOOK_OWNED ? OWNED : look === LOOK_SELECTED ? SELECTED : NONE;
}

export function splitLabel(label) {
  const m = /^([A-Z]+)(\d+)$/.exec(label);
  return m ? [m[1], m[2]] : [label, ""];
}

export function seatName(store, i, state = NONE) {
  const [row, num] = splitLabel(store.labels[i]);
  const word = state === MINE ? "held by you" : state === OWNED ? "booked by you" : STATUS_WORD[store.status[i]];
  const price = store.price[i] ? `, ${money(store.price[i])}` : "";
  return `Row ${row} seat ${num}, ${word}${price}`;
}

// One seat element (a DOM-mode seat or a row picker's button) drawn with this look: its
// classes give shape and pattern, its attributes what a screen reader says.
export function paintSeatElement(node, store, i, look, interactive) {
  node.dataset.status = STATUS_NAMES[store.status[i]];
  node.classList.toggle("is-selected", look === LOOK_SELECTED);
  node.classList.toggle("is-mine", look === LOOK_MINE);
  node.classList.toggle("is-owned", look === LOOK_OWNED);
  if (!interactive) return;
  node.setAttribute("aria-label", seatName(store, i, stateOfLook(look)));
  node.setAttribute("aria-pressed", look === LOOK_SELECTED ? "true" : "false");
  node.setAttribute("aria-disabled", store.status[i] !== AVAILABLE && look < LOOK_MINE ? "true" : "false");
}
