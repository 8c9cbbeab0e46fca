// /map/{id}: the customer's live seat map: pick, hold, extend, confirm, release.
import { api, ApiError, customerApi, customerId, uuid } from "./api.js";
import { liveShow, AVAILABLE, HELD, BOOKED } from "./live.js";
import { SeatMap, legend, seatName, splitLabel, categoryColours, NONE, SELECTED, MINE, OWNED, TOUCH } from "./seatmap.js";
import { el, money, showDate, statusBadge, showIdFromPath, announcer, plural, STATUS_LABEL } from "./util.js";

const MAX_PICK = 10;
const showId = showIdFromPath();
const $ = (id) => document.getElementById(id);
const say = announcer($("sr-polite"), $("sr-assertive"));

// Everything the page knows, in one place. The map draws from it (seatState below), the
// panel from it (drawPanel), and every action changes it then draws again.
const state = {
  show: null, // GET /shows/{id}, kept current by "show" frames
  store: null, // the live SeatStore (live.js)
  selected: new Set(), // seat indices picked, not yet held
  hold: null, // {hold_id, seats: [labels], expires_at, extensions_left, idem, started}; kept in localStorage
  heldIdx: new Set(), // indices of the seats in that hold
  booking: null, // {id, reference, seatIdx} just confirmed, until "Book more seats"
  owned: new Map(), // index of a seat this customer has booked -> the booking's reference
  busy: false, // a hold, extend, confirm or release is on its way
  retryUntil: 0, // ms since epoch: the server asked us to wait until then
  focusNext: null, // () => element to focus once the panel is drawn again
  infoSeat: -1, // the seat described under the map
  warned: false, // the "seconds left" warning was said for this hold
  connTimer: 0, // the "Reconnecting in N s" countdown's interval
};

const holdKey = `modex.hold.${showId}`;

const view = new SeatMap($("seatmap"), {
  interactive: true,
  fit: "width",
  seatState: (i) => (state.heldIdx.has(i) ? MINE : state.owned.has(i) ? OWNED : state.selected.has(i) ? SELECTED : NONE),
  onActivate: (i) => activate(i),
  onHover: (i) => seatInfo(i),
});
window.modexView = view;

// hints for the device in hand: no "hover" or "Ctrl + scroll" on a touch screen
if (TOUCH) {
  $("seat-info").textContent = "Tap a seat to pick it; its row, price and section show here.";
  $("scroll-hint").textContent = "Swipe sideways to see more seats; the row letters stay on the left.";
}

// ---------- rendering of the side panel ----------

function message(text, kind = "error") {
  const m = $("message");
  m.textContent = text || "";
  m.className = `notice ${text ? "notice-" + kind : ""}`;
  m.dataset.network = text && text.startsWith("Can't reach") ? "true" : "false";
  if (text) {
    (kind === "error" ? say.assertive : say.polite)(text);
    // a laptop's short screen: the message and the button beside it come into view
    m.scrollIntoView({ block: "nearest" });
  }
}

function seatLine(i, removable) {
  const [row, num] = splitLabel(state.store.labels[i]);
  const li = el("li", { "data-seat": state.store.labels[i] }, el("span", {}, `Row ${row}, seat ${num}`), el("span", {}, state.store.price[i] ? money(state.store.price[i]) : ""));
  if (removable) {
    li.append(
      el("button", { type: "button", class: "remove", "aria-label": `Remove row ${row} seat ${num}`, onclick: () => toggle(i) }, "Remove"),
    );
  }
  return li;
}

// The panel's buttons are drawn anew on every change: keep keyboard focus where it was (the
// same control, or the first one still usable), or move it where an action says.
function renderPanel() {
  const active = document.activeElement;
  const hadFocus = active && $("actions").contains(active) ? active.id || "" : null;
  drawPanel();
  const next = state.focusNext ? state.focusNext() : hadFocus !== null ? ($(hadFocus) && $("actions").contains($(hadFocus)) ? $(hadFocus) : firstUsable()) : null;
  if (next && !state.busy) state.focusNext = null;
  if (next && next !== document.activeElement) next.focus();
}

function firstUsable() {
  return $("actions").querySelector("button:not([disabled]), a[href]");
}

function seatToFocus() {
  return $("seatmap").querySelector('.seat[tabindex="0"]') || $("seatmap");
}

function drawPanel() {
  const picks = $("picks");
  const actions = $("actions");
  const onSale = state.show && state.show.status === "ON_SALE";
  $("hold-timer").hidden = !state.hold;
  $("ref").hidden = !state.booking;
  let seats = [];
  if (state.booking) {
    $("basket-heading").textContent = "You're booked!";
    $("basket-hint").textContent = "Enjoy the show! Your booking reference (show it at the box office):";
    $("basket-hint").className = "muted";
    $("ref").textContent = state.booking.reference || state.booking.id;
    seats = state.booking.seatIdx;
    picks.replaceChildren(...seats.map((i) => seatLine(i, false)));
    actions.replaceChildren(
      el("a", { class: "btn", href: "/me", id: "my-bookings" }, "My bookings"),
      el("button", { type: "button", class: "btn btn-ghost", id: "book-more", onclick: () => ((state.booking = null), message(""), (state.focusNext = seatToFocus), renderPanel()) }, "Book more seats"),
    );
  } else if (state.hold) {
    $("basket-heading").textContent = "Seats held for you";
    $("basket-hint").textContent = "Confirm before the timer runs out, or the seats go back on sale.";
    $("basket-hint").className = "muted";
    seats = [...state.heldIdx];
    picks.replaceChildren(...seats.map((i) => seatLine(i, false)));
    const ext = state.hold.extensions_left ?? 0;
    actions.replaceChildren(
      el("button", { type: "button", class: "btn btn-accent", id: "confirm", "aria-disabled": state.busy ? "true" : null, onclick: confirm }, "Confirm booking"),
      el("button", { type: "button", class: "btn btn-ghost", id: "extend", disabled: ext <= 0, "aria-disabled": state.busy ? "true" : null, onclick: extend }, ext > 0 ? `More time (${ext} left)` : "No more extensions"),
      el("button", { type: "button", class: "btn btn-danger", id: "release", "aria-disabled": state.busy ? "true" : null, onclick: release }, "Release seats"),
    );
  } else {
    $("basket-heading").textContent = "Your seats";
    $("basket-hint").className = "muted";
    const counts = state.store ? state.store.counts() : null;
    const soldOut = onSale && counts && counts.AVAILABLE === 0 && !state.selected.size;
    $("basket-hint").textContent = !onSale && state.show
      ? `Sales are closed for this show (${STATUS_LABEL[state.show.status] || state.show.status}).`
      : soldOut
        ? counts.HELD
          ? `Sold out for now: every seat is sold or held. ${plural(counts.HELD, "seat")} held by others may come back if not bought.`
          : "Sold out: every seat is sold."
        : state.selected.size ? `${plural(state.selected.size, "seat")} picked (up to ${MAX_PICK}).` : `Pick up to ${MAX_PICK} seats on the map.`;
    $("basket").dataset.soldOut = soldOut ? "true" : "false";
    seats = [...state.selected].sort((a, b) => a - b);
    picks.replaceChildren(...seats.map((i) => seatLine(i, true)));
    const waiting = state.retryUntil > Date.now();
    actions.replaceChildren(
      el(
        "button",
        { type: "button", class: "btn", id: "hold", disabled: !state.selected.size || !onSale || waiting || soldOut, "aria-disabled": state.busy ? "true" : null, onclick: holdSeats },
        waiting ? `Try again in ${Math.ceil((state.retryUntil - Date.now()) / 1000)} s` : state.selected.size ? `Hold ${plural(state.selected.size, "seat")}` : "Hold seats",
      ),
      el("button", { type: "button", class: "btn btn-ghost", id: "clear", disabled: !state.selected.size, "aria-disabled": state.busy ? "true" : null, onclick: clearPicks }, "Clear"),
    );
  }
  const total = seats.reduce((sum, i) => sum + state.store.price[i], 0);
  $("total-row").hidden = !seats.length || !seats.some((i) => state.store.price[i]);
  $("total").textContent = money(total);
  drawBest();
  tick();
}

function showLegend() {
  if (state.store) $("legend").replaceChildren(legend(state.store, { showOwned: state.owned.size > 0 }));
}

// The customer's booked seats of this show, drawn as theirs. Only with a token this browser
// already has: a first visit mints none just to find it has no bookings.
async function loadOwned() {
  if (!customerId()) return;
  try {
    const { bookings } = await customerApi("GET", "/me/bookings");
    const before = [...state.owned.keys()];
    state.owned.clear();
    for (const b of bookings) {
      if (b.show_id !== showId || b.status !== "CONFIRMED") continue;
      for (const label of b.seats) {
        const i = state.store.index.get(label);
        if (i !== undefined) state.owned.set(i, b.reference);
      }
    }
    view.update(before.concat([...state.owned.keys()]));
    showLegend();
  } catch (err) {
    console.warn("could not load your bookings", err);
  }
}

function renderHead() {
  $("title").textContent = state.show.title;
  document.title = `${state.show.title} · Choose your seats · Modex Tickets`;
  $("meta").textContent = `${state.show.venue} · ${showDate(state.show.starts_at)}`;
  $("status-badge").replaceChildren(statusBadge(state.show.status));
}

// Generated layouts put every section flush left, under a centred stage: each section moves
// to the middle. A layout that places its sections itself (any other left edge) is kept.
function centreSections(st) {
  const box = new Map();
  for (let i = 0; i < st.count; i++) {
    const b = box.get(st.section[i]) || { min: Infinity, max: -Infinity };
    b.min = Math.min(b.min, st.x[i]);
    b.max = Math.max(b.max, st.x[i]);
    box.set(st.section[i], b);
  }
  const boxes = [...box.values()];
  if (boxes.length < 2 || boxes.some((b) => b.min !== boxes[0].min)) return;
  const width = Math.max(...boxes.map((b) => b.max - b.min));
  for (let i = 0; i < st.count; i++) {
    const b = box.get(st.section[i]);
    st.x[i] += Math.floor((width - (b.max - b.min)) / 2); // whole cells: seats stay on the grid
  }
}

function seatInfo(i) {
  if (i < 0 || !state.store) return;
  state.infoSeat = i;
  const cat = state.store.category[i];
  const parts = [seatName(state.store, i, state.heldIdx.has(i) ? MINE : state.owned.has(i) ? OWNED : NONE)];
  if (state.store.section[i]) parts.push(state.store.section[i]);
  if (cat && cat !== "standard" && cat.toLowerCase() !== state.store.section[i].toLowerCase()) parts.push(cat[0].toUpperCase() + cat.slice(1));
  $("seat-info").textContent = parts.join(" · ");
}

// ---------- picking ----------

function toggle(i) {
  if (state.selected.has(i)) state.selected.delete(i);
  else state.selected.add(i);
  view.update([i]);
  renderPanel();
}

function activate(i) {
  const label = state.store.labels[i];
  const [row, num] = splitLabel(label);
  if (state.booking) {
    state.booking = null;
    renderPanel();
  }
  if (state.heldIdx.has(i)) {
    message(`Row ${row} seat ${num} is already held for you.`, "info");
    return;
  }
  if (state.owned.has(i)) {
    message(`Row ${row} seat ${num} is yours: booking ${state.owned.get(i)}. See My bookings to cancel it.`, "info");
    return;
  }
  if (state.hold) {
    message("Confirm or release the seats you hold before picking others.", "info");
    return;
  }
  if (!state.selected.has(i) && state.store.status[i] !== AVAILABLE) {
    message(`Row ${row} seat ${num} is ${state.store.status[i] === BOOKED ? "already sold" : "held by someone else"}. Please pick another seat.`, "info");
    return;
  }
  if (state.show && state.show.status !== "ON_SALE") {
    message(`Sales are closed for this show (${STATUS_LABEL[state.show.status] || state.show.status}).`, "info");
    return;
  }
  if (!state.selected.has(i) && state.selected.size >= MAX_PICK) {
    message(`You can pick up to ${MAX_PICK} seats at a time.`, "info");
    return;
  }
  const adding = !state.selected.has(i);
  toggle(i);
  message("");
  say.polite(`Row ${row} seat ${num} ${adding ? "added" : "removed"}. ${plural(state.selected.size, "seat")} picked.`);
}

function clearPicks() {
  const was = [...state.selected];
  state.selected.clear();
  view.update(was);
  message("");
  renderPanel();
}

function labelsText(labels) {
  if (labels.length <= 1) return labels.join("");
  return `${labels.slice(0, -1).join(", ")} and ${labels[labels.length - 1]}`;
}

// ---------- hold lifecycle ----------

function saveHold() {
  if (state.hold) localStorage.setItem(holdKey, JSON.stringify(state.hold));
  else localStorage.removeItem(holdKey);
}

function setLocalStatus(indices, status) {
  for (const i of indices) state.store.status[i] = status;
  view.update(indices);
  if (indices.includes(state.infoSeat)) seatInfo(state.infoSeat);
}

function adoptHold(h, idem) {
  state.hold = { hold_id: h.hold_id, seats: h.seats, expires_at: h.expires_at, extensions_left: h.extensions_left, idem: idem || uuid(), started: state.hold?.started || Date.now() };
  const idx = h.seats.map((l) => state.store.index.get(l)).filter((i) => i !== undefined);
  const old = [...state.heldIdx];
  state.heldIdx = new Set(idx);
  view.update(old.concat(idx));
  saveHold();
}

function dropHold() {
  const old = [...state.heldIdx];
  state.hold = null;
  state.heldIdx = new Set();
  view.update(old);
  saveHold();
}

function handleError(err, what) {
  if (!(err instanceof ApiError)) {
    message(`Something went wrong while trying to ${what}. Please try again.`);
    console.error(err);
    return;
  }
  if (err.status === 429 || (err.status === 503 && err.retryAfter)) {
    const secs = err.retryAfter || 1;
    state.retryUntil = Date.now() + secs * 1000;
    message(`${err.status === 429 ? "Too many requests" : "The box office is busy"}. Please wait ${plural(secs, "second")} and try again.`);
    setTimeout(renderPanel, secs * 1000 + 50);
    return;
  }
  message(err.message || `Could not ${what}.`);
}

async function holdSeats() {
  if (state.busy || !state.selected.size) return;
  state.busy = true;
  renderPanel();
  const idx = [...state.selected].sort((a, b) => a - b);
  const labels = idx.map((i) => state.store.labels[i]);
  try {
    const h = await customerApi("POST", `/shows/${showId}/holds`, { body: { seats: labels } });
    state.selected.clear();
    adoptHold(h);
    setLocalStatus([...state.heldIdx], HELD);
    state.focusNext = () => $("confirm");
    message(`${plural(h.seats.length, "seat")} held for you: ${labelsText(h.seats)}. Confirm to book.`, "ok");
  } catch (err) {
    if (err instanceof ApiError && err.status === 409 && err.code === "seats_unavailable") {
      const taken = err.body.seats || [];
      for (const l of taken) {
        const i = state.store.index.get(l);
        if (i !== undefined) state.selected.delete(i);
      }
      view.update(idx);
      const n = taken.length;
      message(
        `Sorry, ${n === 1 ? "seat" : "seats"} ${labelsText(taken)} ${n === 1 ? "was" : "were"} just taken by someone else. ` +
          (state.selected.size ? "Your other seats are still picked: try again." : "Please pick other seats."),
      );
    } else if (err instanceof ApiError && err.status === 422) {
      message(`We couldn't hold those seats: ${err.message}`);
    } else {
      handleError(err, "hold your seats");
    }
  } finally {
    state.busy = false;
    renderPanel();
  }
}

// ---------- best available: the server picks adjacent seats and holds them ----------

// a phone's pinned bar stays short: there the control sits in the page, under the map
const narrow = matchMedia("(max-width: 900px)");
function placeBest() {
  if (narrow.matches) document.querySelector(".map-layout").after($("best"));
  else document.querySelector(".panel").append($("best"));
}
narrow.addEventListener("change", placeBest);
placeBest();

for (let n = 1; n <= MAX_PICK; n++) $("best-count").append(el("option", { value: String(n) }, String(n)));
$("best-count").value = "2";

function fillBestCategories(st) {
  const cats = [...categoryColours(st).keys()];
  const field = $("best-category-field");
  field.hidden = cats.length < 2;
  $("best-category").replaceChildren(el("option", { value: "" }, "Any area"), ...cats.map((c) => el("option", { value: c }, c[0].toUpperCase() + c.slice(1))));
}

function drawBest() {
  const onSale = state.show && state.show.status === "ON_SALE";
  const off = !state.store || !onSale || !!state.hold || state.retryUntil > Date.now();
  $("best-hold").disabled = off;
  $("best-hold").setAttribute("aria-disabled", state.busy ? "true" : "false");
  $("best").dataset.state = state.hold || state.booking ? "holding" : state.selected.size ? "picking" : onSale ? "ready" : "closed";
}

async function holdBest(e) {
  e.preventDefault();
  if (state.busy || state.hold || !state.store) return;
  const count = Number($("best-count").value);
  const category = $("best-category-field").hidden ? "" : $("best-category").value;
  const best = { count, allow_split: $("best-split").checked };
  if (category) best.category = category;
  state.busy = true;
  renderPanel();
  try {
    const h = await customerApi("POST", `/shows/${showId}/holds`, { body: { best } });
    const was = [...state.selected];
    state.selected.clear();
    view.update(was);
    adoptHold(h);
    setLocalStatus([...state.heldIdx], HELD);
    state.focusNext = () => $("confirm");
    const rows = new Set(h.seats.map((l) => splitLabel(l)[0]));
    message(`${plural(h.seats.length, "seat")} held for you${rows.size === 1 ? " side by side in row " + [...rows][0] : ""}: ${labelsText(h.seats)}. Confirm to book.`, "ok");
  } catch (err) {
    const where = category ? ` in ${category[0].toUpperCase() + category.slice(1)}` : "";
    if (err instanceof ApiError && err.code === "no_adjacent_seats") {
      message(
        `No row has ${count} free seats together${where} right now. Try fewer seats` +
          (category ? ", another area" : "") +
          (best.allow_split ? "." : `, or tick "Seats may be split" to get them in smaller groups.`),
      );
    } else if (err instanceof ApiError && err.code === "seat_limit") {
      message(`That would take you past the limit of seats one customer may have for this show (${err.message}). Try fewer seats.`);
    } else if (err instanceof ApiError && err.code === "seats_unavailable") {
      message(`There aren't ${count} free seats${where} left right now. Try fewer seats${category ? " or another area" : ""}.`);
    } else if (err instanceof ApiError && err.status === 422) {
      message(`We couldn't find seats: ${err.message}`);
    } else {
      handleError(err, "find seats for you");
    }
  } finally {
    state.busy = false;
    renderPanel();
  }
}
$("best-form").addEventListener("submit", holdBest);

async function extend() {
  if (!state.hold || state.busy) return;
  state.busy = true;
  renderPanel();
  try {
    const h = await customerApi("POST", `/holds/${encodeURIComponent(state.hold.hold_id)}/extend`);
    adoptHold({ ...state.hold, ...h }, state.hold.idem);
    const left = Math.max(0, Math.round((Date.parse(h.expires_at) - Date.now()) / 1000));
    message(`You have more time: ${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")} left to confirm.`, "ok");
  } catch (err) {
    if (err instanceof ApiError && (err.status === 409 || err.status === 404)) {
      if (err.code === "extend_limit_reached") {
        state.hold.extensions_left = 0;
        message(err.message || "No more extensions for this hold.");
      } else {
        expired(err.message);
      }
    } else handleError(err, "extend your hold");
  } finally {
    state.busy = false;
    renderPanel();
  }
}

async function confirm() {
  if (!state.hold || state.busy) return;
  state.busy = true;
  renderPanel();
  try {
    const b = await customerApi("POST", `/holds/${encodeURIComponent(state.hold.hold_id)}/confirm`, { headers: { "Idempotency-Key": state.hold.idem } });
    const idx = [...state.heldIdx];
    dropHold();
    setLocalStatus(idx, BOOKED);
    state.booking = { id: b.id, reference: b.reference, seatIdx: idx };
    state.focusNext = () => $("basket-heading");
    for (const i of idx) state.owned.set(i, b.reference);
    view.update(idx);
    showLegend();
    message(`Booking confirmed: ${labelsText(b.seats || idx.map((i) => state.store.labels[i]))}. Your reference is ${(b.reference || "").split("").join(" ")}.`, "ok");
  } catch (err) {
    if (err instanceof ApiError && (err.status === 409 || err.status === 404)) expired(err.message);
    else handleError(err, "confirm your booking");
  } finally {
    state.busy = false;
    renderPanel();
  }
}

async function release() {
  if (!state.hold || state.busy) return;
  state.busy = true;
  renderPanel();
  try {
    await customerApi("DELETE", `/holds/${encodeURIComponent(state.hold.hold_id)}`);
    const idx = [...state.heldIdx];
    dropHold();
    setLocalStatus(idx, AVAILABLE);
    state.focusNext = seatToFocus;
    message("Seats released. Pick seats on the map again.", "info");
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      dropHold();
      message("Those seats were already released.", "info");
    } else handleError(err, "release your seats");
  } finally {
    state.busy = false;
    renderPanel();
  }
}

function expired(detail) {
  const idx = [...state.heldIdx];
  dropHold();
  if (idx.includes(state.infoSeat)) setTimeout(() => seatInfo(state.infoSeat), 0); // no longer "held by you"
  for (const i of idx) if (state.store.status[i] === HELD) state.store.status[i] = AVAILABLE;
  view.update(idx);
  message(`Your hold has expired and the seats went back on sale.${detail ? " (" + detail + ")" : ""} Pick seats again to continue.`);
  renderPanel();
}

function tick() {
  if (!state.hold) {
    state.warned = false;
    return;
  }
  const left = Math.max(0, Date.parse(state.hold.expires_at) - Date.now());
  const secs = Math.ceil(left / 1000);
  $("countdown").textContent = `${Math.floor(secs / 60)}:${String(secs % 60).padStart(2, "0")}`;
  $("hold-timer").querySelector(".countdown").classList.toggle("urgent", secs <= 10);
  const span = Math.max(1, Date.parse(state.hold.expires_at) - (state.hold.started || Date.now()));
  $("timebar").style.width = `${Math.min(100, (left / span) * 100)}%`;
  if (secs <= 10 && !state.warned && secs > 0) {
    state.warned = true;
    say.assertive(`${secs} seconds left to confirm your seats.`);
  }
  if (secs > 10) state.warned = false;
  if (left <= 0 && !state.busy) expired();
}

// ---------- live updates ----------

function onSeats(st, changed) {
  for (const i of changed) if (state.owned.has(i) && st.status[i] !== BOOKED) state.owned.delete(i); // cancelled
  view.update(changed);
  if (state.infoSeat >= 0 && changed.includes(state.infoSeat)) seatInfo(state.infoSeat);
  const lost = [];
  for (const i of changed) {
    if (state.selected.has(i) && st.status[i] !== AVAILABLE) {
      state.selected.delete(i);
      lost.push(st.labels[i]);
    }
  }
  const soldOut = st.counts().AVAILABLE === 0;
  if (soldOut !== ($("basket").dataset.soldOut === "true") && !state.hold && !state.booking) renderPanel();
  if (lost.length) {
    message(`${lost.length === 1 ? "Seat" : "Seats"} ${labelsText(lost)} ${lost.length === 1 ? "was" : "were"} just taken by someone else and removed from your picks.`);
    renderPanel();
  }
}

function setConn(s) {
  const conn = $("conn");
  // live again: a "can't reach the server" from before is no longer true
  if (s.state === "connected" && $("message").dataset.network === "true") message("");
  conn.dataset.state = s.state;
  clearInterval(state.connTimer);
  const text = $("conn-text");
  if (s.state === "connected") text.textContent = "Live";
  else if (s.state === "reconnecting" && s.retryAt) {
    const upd = () => (text.textContent = `Reconnecting in ${Math.max(0, Math.ceil((s.retryAt - Date.now()) / 1000))} s`);
    upd();
    state.connTimer = setInterval(upd, 500);
  } else if (s.state === "reconnecting") text.textContent = "Reconnecting…";
  else text.textContent = "Connecting…";
}

function showAnnouncement(text) {
  $("announcement-text").textContent = text;
  $("announcement").hidden = false;
  say.assertive(`Announcement: ${text}`);
}
$("announcement-close").addEventListener("click", () => ($("announcement").hidden = true));

async function start() {
  if (!showId) {
    $("title").textContent = "Show not found";
    return;
  }
  try {
    state.show = await api("GET", `/shows/${showId}`);
    renderHead();
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      $("title").textContent = "Show not found";
      $("page-error").textContent = "This show does not exist. It may have been removed.";
      $("page-error").className = "notice notice-error";
      // nothing to connect to or draw: no "Connecting…" forever, no empty map
      $("conn").hidden = true;
      document.querySelector(".map-layout").hidden = true;
      $("best").hidden = true;
      return;
    }
  }
  const live = liveShow(showId, {
    onLayout: (st) => {
      state.store = st;
      centreSections(st);
      view.setStore(st);
      fillBestCategories(st);
      showLegend();
      loadOwned();
      // no prices on this show: the hint does not promise one
      if (!TOUCH && !st.price.some((p) => p)) $("seat-info").textContent = "Hover over or tab to a seat to see its row and number.";
      // re-attach a hold kept from before a reload
      state.heldIdx = new Set((state.hold?.seats || []).map((l) => st.index.get(l)).filter((i) => i !== undefined));
      for (const i of [...state.selected]) if (i >= st.count) state.selected.delete(i);
      renderPanel();
    },
    onSeats,
    onPresence: (n) => ($("watchers").textContent = `${plural(n, "person", "people")} viewing`),
    onAnnouncement: showAnnouncement,
    onShow: (frame) => {
      const was = state.show ? state.show.status : null;
      state.show = { ...state.show, ...frame };
      delete state.show.type;
      renderHead();
      renderPanel();
      if (was && frame.status && frame.status !== was) say.assertive(`This show is now ${STATUS_LABEL[frame.status] || frame.status}.`);
    },
    onState: setConn,
    onError: (frame) => {
      if (frame.code === "not_found" || frame.code === "unknown_show") {
        $("page-error").textContent = "This show is no longer available.";
        $("page-error").className = "notice notice-error";
      }
    },
  });
  window.modexLive = live;
  try {
    const saved = JSON.parse(localStorage.getItem(holdKey) || "null");
    if (saved && Date.parse(saved.expires_at) > Date.now()) state.hold = saved;
    else localStorage.removeItem(holdKey);
  } catch {
    localStorage.removeItem(holdKey);
  }
  await live.ready;
  setInterval(tick, 250);
}

start();
