// Drawing seats on a 2D canvas: fills grouped by colour and marks batched into one path per
// kind, so a full redraw of 100,000 seats makes a handful of canvas state changes. Status
// shows as shape and pattern as well as colour: held seats striped, booked crossed, off-sale
// barred, reserved dotted, picked ticked.

import { AVAILABLE, HELD, BOOKED, BLOCKED, RESERVED } from "../live.js";
import { PALETTE } from "./palette.js";
import { LOOK_SELECTED, LOOK_MINE, LOOK_OWNED } from "./seats.js";

const BG = "#ffffff";
const HELD_FILL = "#e2e8f0";
const HELD_LINE = "#64748b";
const BOOKED_FILL = "#334155";
const BLOCKED_FILL = "#111827"; // off sale: near-black with a white bar (a "no entry" sign)
const RESERVED_FILL = "#6b21a8"; // kept for a channel: deep purple with a white dot
const MINE_FILL = "#f59e0b";
const MINE_LINE = "#78350f";
const OWNED_FILL = "#9a3412"; // the customer's own booked seats: white cross on dark orange
const FOCUS = "#111827";
const FOCUS_OUTER = "#fbbf24";

function fillFor(look, paletteIndex) {
  switch (look) {
    case AVAILABLE:
    case LOOK_SELECTED:
      return PALETTE[paletteIndex];
    case HELD:
      return HELD_FILL;
    case BOOKED:
      return BOOKED_FILL;
    case BLOCKED:
      return BLOCKED_FILL;
    case RESERVED:
      return RESERVED_FILL;
    case LOOK_OWNED:
      return OWNED_FILL;
    default:
      return MINE_FILL;
  }
}

export function clear(ctx, width, height) {
  ctx.fillStyle = BG;
  ctx.fillRect(0, 0, width, height);
}

// The seats in `dirty` (DirtySeats; all of them when dirty.all) as seen through `view`.
// scene: {store, geometry, view, width, height, colour (PALETTE index per seat), lookOf(i),
// hover and cursor (the seats that get a focus ring, -1 for none)}
export function paintSeats(ctx, scene, dirty) {
  const { store: s, geometry: g, view: v, width, height, colour, lookOf, hover, cursor } = scene;
  const full = dirty.all;
  const size = v.s;
  const gap = size >= 4 ? size * 0.18 : size >= 2 ? 0.5 : 0;
  const box = size - gap;
  const count = full ? s.count : dirty.count;
  // group by fill colour to keep canvas state changes few
  const held = [];
  const booked = [];
  const marks = [];
  const rings = [];
  const bars = []; // blocked
  const dots = []; // reserved
  let lastFill = "";
  for (let n = 0; n < count; n++) {
    const i = full ? n : dirty.list[n];
    const px = v.tx + (s.x[i] - g.minX) * size;
    const py = v.ty + (s.y[i] - g.minY) * size;
    if (px + size < 0 || py + size < 0 || px > width || py > height) continue;
    const look = lookOf(i);
    if (!full) {
      ctx.fillStyle = BG;
      ctx.fillRect(px - 0.5, py - 0.5, size + 1, size + 1);
      lastFill = BG;
    }
    const fill = fillFor(look, colour[i]);
    if (fill !== lastFill) {
      ctx.fillStyle = fill;
      lastFill = fill;
    }
    const x = px + gap / 2, y = py + gap / 2;
    ctx.fillRect(x, y, box, box);
    if (look === HELD || look === LOOK_MINE) held.push(x, y, look);
    else if (look === BOOKED || look === LOOK_OWNED) booked.push(x, y);
    else if (look === LOOK_SELECTED) marks.push(x, y);
    else if (look === BLOCKED) bars.push(x, y);
    else if (look === RESERVED) dots.push(x, y);
    if (i === hover || i === cursor) rings.push(px, py);
  }
  // held: diagonal stripes (pattern, not colour only)
  if (held.length && box >= 3) {
    ctx.beginPath();
    for (let n = 0; n < held.length; n += 3) {
      const x = held[n], y = held[n + 1];
      ctx.moveTo(x, y + box);
      ctx.lineTo(x + box, y);
      if (box >= 8) {
        ctx.moveTo(x, y + box / 2);
        ctx.lineTo(x + box / 2, y);
        ctx.moveTo(x + box / 2, y + box);
        ctx.lineTo(x + box, y + box / 2);
      }
    }
    ctx.strokeStyle = HELD_LINE;
    ctx.lineWidth = Math.max(1, box / 8);
    ctx.stroke();
  }
  // blocked: a white bar; reserved: a white dot (shapes, not colour only)
  if ((bars.length || dots.length) && box >= 5) {
    ctx.fillStyle = "#ffffff";
    for (let n = 0; n < bars.length; n += 2) ctx.fillRect(bars[n] + box * 0.2, bars[n + 1] + box * 0.42, box * 0.6, box * 0.16);
    ctx.beginPath();
    for (let n = 0; n < dots.length; n += 2) {
      ctx.moveTo(dots[n] + box * 0.68, dots[n + 1] + box / 2);
      ctx.arc(dots[n] + box / 2, dots[n + 1] + box / 2, box * 0.18, 0, Math.PI * 2);
    }
    ctx.fill();
  }
  // booked: a cross
  if (booked.length && box >= 5) {
    ctx.beginPath();
    const m = box * 0.25;
    for (let n = 0; n < booked.length; n += 2) {
      const x = booked[n], y = booked[n + 1];
      ctx.moveTo(x + m, y + m);
      ctx.lineTo(x + box - m, y + box - m);
      ctx.moveTo(x + box - m, y + m);
      ctx.lineTo(x + m, y + box - m);
    }
    ctx.strokeStyle = "#ffffff";
    ctx.lineWidth = Math.max(1, box / 9);
    ctx.stroke();
  }
  // selected: a tick
  if (marks.length && box >= 5) {
    ctx.beginPath();
    for (let n = 0; n < marks.length; n += 2) {
      const x = marks[n], y = marks[n + 1];
      ctx.moveTo(x + box * 0.22, y + box * 0.52);
      ctx.lineTo(x + box * 0.42, y + box * 0.72);
      ctx.lineTo(x + box * 0.78, y + box * 0.3);
    }
    ctx.strokeStyle = "#ffffff";
    ctx.lineWidth = Math.max(1.2, box / 7);
    ctx.stroke();
  }
  if (held.length && box >= 3) {
    // outline the seats held for this customer
    ctx.beginPath();
    for (let n = 0; n < held.length; n += 3) if (held[n + 2] === LOOK_MINE) ctx.rect(held[n], held[n + 1], box, box);
    ctx.strokeStyle = MINE_LINE;
    ctx.lineWidth = Math.max(1, box / 8);
    ctx.stroke();
  }
  if (rings.length) {
    // the focus ring: amber outside, dark inside, as on DOM seats (within the seat's cell,
    // which a partial redraw clears)
    for (const [colour, width, inset] of [[FOCUS_OUTER, 2.5, 1.25], [FOCUS, 2, 3.5]]) {
      ctx.beginPath();
      for (let n = 0; n < rings.length; n += 2) ctx.rect(rings[n] + inset, rings[n + 1] + inset, size - 2 * inset, size - 2 * inset);
      ctx.strokeStyle = colour;
      ctx.lineWidth = width;
      ctx.stroke();
    }
  }
}

// each section's name above its top-left seat, once seats are big enough to tell apart
export function paintSectionLabels(ctx, { geometry: g, view: v, minText }) {
  if (v.s < 5 || g.sections.length < 2) return;
  const least = minText || 10; // a kiosk asks for text readable across a room
  ctx.fillStyle = "#475569";
  ctx.font = `600 ${Math.min(Math.max(16, least), Math.max(least, v.s * 0.9))}px system-ui, sans-serif`;
  ctx.textBaseline = "bottom";
  ctx.textAlign = "left";
  for (const sec of g.sections) {
    ctx.fillText(sec.name, v.tx + (sec.minX - g.minX) * v.s, v.ty + (sec.minY - g.minY) * v.s - 2);
  }
}

// Row letters beside each row once the rows are tall enough to carry them (zoomed in),
// left of the row's first seat, or at the left edge while that seat is scrolled away.
export function paintRowLabels(ctx, { store: s, geometry: g, view: v, width, height, minText }) {
  const size = Math.min(18, v.s * 0.75);
  if (size < Math.max(9, minText || 0)) return;
  ctx.font = `700 ${size}px system-ui, sans-serif`;
  ctx.textBaseline = "middle";
  ctx.textAlign = "right";
  const pad = size * 1.6;
  g.rowList.forEach((row, ri) => {
    const first = row[0];
    const y = v.ty + (s.y[first] - g.minY + 0.5) * v.s;
    if (y < 0 || y > height) return;
    const x = Math.max(pad, v.tx + (s.x[first] - g.minX) * v.s - 3);
    if (x - pad > width) return;
    ctx.fillStyle = "rgb(255 255 255 / 85%)";
    ctx.fillRect(x - pad + 2, y - size * 0.6, pad - 2, size * 1.2);
    ctx.fillStyle = "#1e293b";
    ctx.fillText(g.rowName(ri), x - 1, y);
  });
}
