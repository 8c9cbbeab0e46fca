// /admin: the selected show's seat map as a seat picker. Click selects a seat, Shift+click a
// block from the last seat clicked, a drag the block it sweeps; by keyboard, arrows move,
// Space or Enter toggles, Shift+arrows extend. "Block", "Reserve for channel" and "Put on
// sale" send the selection to POST /admin/shows/{id}/seats; the change comes back live.
import { ApiError } from "./api.js";
import { liveShow, STATUS_NAMES } from "./live.js";
import { SeatMap, legend, seatName, NONE, SELECTED } from "./seatmap.js";
import { el } from "./util.js";

const $ = (id) => document.getElementById(id);
const CHANNEL = /^[a-z0-9][a-z0-9_-]{0,39}$/;

export function seatPicker({ call, errorText, say, onChanged, onLive }) {
  let showId = null;
  let live = null;
  let store = null;
  const selected = new Set();
  let anchor = -1; // the last seat clicked: Shift+click selects the block from it
  let shift = false; // Shift held on the pointer or key that activated a seat
  let drag = null; // {from, base, moved}
  let busy = false;

  const view = new SeatMap($("admin-seatmap"), {
    interactive: true,
    fit: "width",
    seatState: (i) => (selected.has(i) ? SELECTED : NONE),
    onActivate: (i) => activate(i),
    onHover: (i) => i >= 0 && store && ($("admin-seat-info").textContent = seatName(store, i)),
  });

  // the seats in the rectangle between two seats (one row: the seats between them)
  function block(a, b) {
    const x0 = Math.min(store.x[a], store.x[b]), x1 = Math.max(store.x[a], store.x[b]);
    const y0 = Math.min(store.y[a], store.y[b]), y1 = Math.max(store.y[a], store.y[b]);
    const out = [];
    for (let i = 0; i < store.count; i++) if (store.x[i] >= x0 && store.x[i] <= x1 && store.y[i] >= y0 && store.y[i] <= y1) out.push(i);
    return out;
  }

  function setSelection(next) {
    const changed = [...selected, ...next];
    selected.clear();
    for (const i of next) selected.add(i);
    view.update(changed);
    draw();
  }

  function activate(i) {
    if (drag && drag.moved) return; // the drag already chose
    if (shift && anchor >= 0) {
      setSelection(new Set([...selected, ...block(anchor, i)]));
    } else {
      const next = new Set(selected);
      if (next.has(i)) next.delete(i);
      else next.add(i);
      anchor = i;
      setSelection(next);
    }
    shift = false;
  }

  const root = $("admin-seatmap");
  // modifiers and drags seen before the seat map's own listeners (seatmap/dom-renderer.js) act on them
  root.addEventListener("pointerdown", (e) => {
    shift = e.shiftKey;
    const b = e.target.closest(".seat[data-i]");
    drag = b && e.button === 0 && e.pointerType === "mouse" ? { from: Number(b.dataset.i), base: new Set(selected), moved: false } : null;
  }, true);
  root.addEventListener("pointerover", (e) => {
    if (!drag || !(e.buttons & 1)) return;
    const b = e.target.closest(".seat[data-i]");
    if (!b) return;
    const i = Number(b.dataset.i);
    if (i === drag.from && !drag.moved) return;
    drag.moved = true;
    anchor = drag.from;
    setSelection(new Set([...drag.base, ...block(drag.from, i)]));
  });
  document.addEventListener("pointerup", () => {
    // the click that ends a drag (if any) comes first, then this clears it
    if (drag && drag.moved) setTimeout(() => (drag = null), 0);
    else drag = null;
  });
  root.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") shift = e.shiftKey;
  }, true);
  // Shift+arrows: the seat map (seatmap/keyboard.js) has moved the focus; the block grows to it
  root.addEventListener("keydown", (e) => {
    if (!e.shiftKey || !/^(Arrow|Home|End|Page)/.test(e.key)) return;
    const b = document.activeElement && document.activeElement.closest && document.activeElement.closest(".seat[data-i]");
    if (!b || !store) return;
    const i = Number(b.dataset.i);
    if (anchor < 0) anchor = i;
    setSelection(new Set([...selected, ...block(anchor, i)]));
  });

  function labels() {
    return [...selected].sort((a, b) => a - b).map((i) => store.labels[i]);
  }

  function draw() {
    const n = selected.size;
    const list = labels();
    $("admin-selection").textContent = n
      ? `${n} seat${n === 1 ? "" : "s"} selected: ${list.slice(0, 12).join(", ")}${n > 12 ? ` and ${n - 12} more` : ""}.`
      : "No seats selected.";
    for (const id of ["seats-block", "seats-reserve", "seats-release", "seats-clear"]) $(id).disabled = !n || busy;
    if (store) $("admin-legend").replaceChildren(legend(store, { showMine: false, showSelected: true }));
  }

  async function apply(status) {
    if (!selected.size || busy || showId === null) return;
    const body = { seats: labels(), status };
    if (status === "RESERVED") {
      const channel = $("seats-channel").value.trim().toLowerCase();
      if (!CHANNEL.test(channel)) {
        $("seats-channel").setAttribute("aria-invalid", "true");
        say(channel ? "Channel: use lower-case letters, digits, - or _ (up to 40), e.g. press or vip." : "Channel: name the channel to reserve the seats for, e.g. press or vip.", "error");
        $("seats-channel").focus();
        return;
      }
      $("seats-channel").removeAttribute("aria-invalid");
      body.channel = channel;
    }
    busy = true;
    draw();
    try {
      const res = await call("POST", `/admin/shows/${showId}/seats`, body);
      const n = res.seats.length;
      const what = status === "BLOCKED" ? "taken off sale" : status === "RESERVED" ? `reserved for ${body.channel}` : "put on general sale";
      say(`${n} seat${n === 1 ? "" : "s"} ${what}: ${res.seats.map((s) => s.label).join(", ")}.`);
      // what the server answered, drawn now (the live push repeats it)
      for (const s of res.seats) {
        const i = store.index.get(s.label);
        if (i !== undefined) store.status[i] = STATUS_NAMES.indexOf(s.status);
      }
      const was = [...selected];
      selected.clear();
      view.update(was);
      onChanged && onChanged();
    } catch (err) {
      const seats = err instanceof ApiError && err.body && err.body.seats;
      if (err instanceof ApiError && err.code === "seats_unavailable" && seats) say(`Not changed: ${seats.join(", ")} ${seats.length === 1 ? "is" : "are"} held or sold. Deselect ${seats.length === 1 ? "it" : "them"} (or cancel the booking) and try again.`, "error");
      else say(`Could not change the seats: ${errorText(err)}`, "error");
    } finally {
      busy = false;
      draw();
    }
  }

  $("seats-block").addEventListener("click", () => apply("BLOCKED"));
  $("seats-reserve").addEventListener("click", () => apply("RESERVED"));
  $("seats-release").addEventListener("click", () => apply("AVAILABLE"));
  $("seats-clear").addEventListener("click", () => setSelection(new Set()));

  return {
    open(id) {
      if (id === showId) return;
      if (live) live.stop();
      showId = id;
      store = null;
      selected.clear();
      anchor = -1;
      draw();
      live = liveShow(id, {
        counted: false, // the box office, not a customer watching
        onLayout: (st) => {
          store = st;
          view.setStore(st);
          draw();
        },
        onSeats: (st, changed) => {
          view.update(changed);
          draw();
          onLive && onLive();
        },
      });
    },
    get view() {
      return view;
    },
  };
}
