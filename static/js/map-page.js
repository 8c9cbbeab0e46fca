// /map/{id}: the customer's live seat map: pick, hold, extend, confirm, release.
import { api, ApiError, customerApi, customerId, uuid } from "./api.js";
import { liveShow, AVAILABLE, HELD, BOOKED } from "./live.js";
import { SeatMap, legend, seatName, splitLabel, categoryColours, NONE, SELECTED, MINE, OWNED, TOUCH } from "./seatmap.js";
import { el, money, showDate, statusBadge, showIdFromPath, announcer, plural, STATUS_LABEL } from "./util.js";

const MAX_PICK = 10;
const showId = showIdFromPath();
const $ = (id) => document.getElementById(id);
const say = announcer($("sr-polite"), $("sr-assertive"));

let show = null;
let store = null;
const selected = new Set(); // seat indices picked, not yet held
let hold = null; // {hold_id, seats:[labels], expires_at, extensions_left, idem, total}
let heldIdx = new Set(); // indices of seats in my hold
let booking = null;
const owned = new Map(); // index of a seat this customer has booked -> the booking's reference
let busy = false;
let retryUntil = 0;
let ticker = null;
let focusNext = null; // () => element to focus once the panel is drawn again

const holdKey = `modex.hold.${showId}`;

const view = new SeatMap($("seatmap"), {
  interactive: true,
  fit: "width",
  seatState: (i) => (heldIdx.has(i) ? MINE : owned.has(i) ? OWNED : selected.has(i) ? SELECTED : NONE),
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
  const [row, num] = splitLabel(store.labels[i]);
  const li = el("li", { "data-seat": store.labels[i] }, el("span", {}, `Row ${row}, seat ${num}`), el("span", {}, store.price[i] ? money(store.price[i]) : ""));
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
  const next = focusNext ? focusNext() : hadFocus !== null ? ($(hadFocus) && $("actions").contains($(hadFocus)) ? $(hadFocus) : firstUsable()) : null;
  if (next && !busy) focusNext = null;
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
  const onSale = show && show.status === "ON_SALE";
  $("hold-timer").hidden = !hold;
  $("ref").hidden = !booking;
  let seats = [];
  if (booking) {
    $("basket-heading").textContent = "You're booked!";
    $("basket-hint").textContent = "Enjoy the show! Your booking reference (show it at the box office):";
    $("basket-hint").className = "muted";
    $("ref").textContent = booking.reference || booking.id;
    seats = booking.seatIdx;
    picks.replaceChildren(...seats.map((i) => seatLine(i, false)));
    actions.replaceChildren(
      el("a", { class: "btn", href: "/me", id: "my-bookings" }, "My bookings"),
      el("button", { type: "button", class: "btn btn-ghost", id: "book-more", onclick: () => ((booking = null), message(""), (focusNext = seatToFocus), renderPanel()) }, "Book more seats"),
    );
  } else if (hold) {
    $("basket-heading").textContent = "Seats held for you";
    $("basket-hint").textContent = "Confirm before the timer runs out, or the seats go back on sale.";
    $("basket-hint").className = "muted";
    seats = [...heldIdx];
    picks.replaceChildren(...seats.map((i) => seatLine(i, false)));
    const ext = hold.extensions_left ?? 0;
    actions.replaceChildren(
      el("button", { type: "button", class: "btn btn-accent", id: "confirm", "aria-disabled": busy ? "true" : null, onclick: confirm }, "Confirm booking"),
      el("button", { type: "button", class: "btn btn-ghost", id: "extend", disabled: ext <= 0, "aria-disabled": busy ? "true" : null, onclick: extend }, ext > 0 ? `More time (${ext} left)` : "No more extensions"),
      el("button", { type: "button", class: "btn btn-danger", id: "release", "aria-disabled": busy ? "true" : null, onclick: release }, "Release seats"),
    );
  } else {
    $("basket-heading").textContent = "Your seats";
    $("basket-hint").className = "muted";
    const counts = store ? store.counts() : null;
    const soldOut = onSale && counts && counts.AVAILABLE === 0 && !selected.size;
    $("basket-hint").textContent = !onSale && show
      ? `Sales are closed for this show (${STATUS_LABEL[show.status] || show.status}).`
      : soldOut
        ? counts.HELD
          ? `Sold out for now: every seat is sold or held. ${plural(counts.HELD, "seat")} held by others may come back if not bought.`
          : "Sold out: every seat is sold."
        : selected.size ? `${plural(selected.size, "seat")} picked (up to ${MAX_PICK}).` : `Pick up to ${MAX_PICK} seats on the map.`;
    $("basket").dataset.soldOut = soldOut ? "true" : "false";
    seats = [...selected].sort((a, b) => a - b);
    picks.replaceChildren(...seats.map((i) => seatLine(i, true)));
    const waiting = retryUntil > Date.now();
    actions.replaceChildren(
      el(
        "button",
        { type: "button", class: "btn", id: "hold", disabled: !selected.size || !onSale || waiting || soldOut, "aria-disabled": busy ? "true" : null, onclick: holdSeats },
        waiting ? `Try again in ${Math.ceil((retryUntil - Date.now()) / 1000)} s` : selected.size ? `Hold ${plural(selected.size, "seat")}` : "Hold seats",
      ),
      el("button", { type: "button", class: "btn btn-ghost", id: "clear", disabled: !selected.size, "aria-disabled": busy ? "true" : null, onclick: clearPicks }, "Clear"),
    );
  }
  const total = seats.reduce((sum, i) => sum + store.price[i], 0);
  $("total-row").hidden = !seats.length || !seats.some((i) => store.price[i]);
  $("total").textContent = money(total);
  drawBest();
  tick();
}

function showLegend() {
  if (store) $("legend").replaceChildren(legend(store, { showOwned: owned.size > 0 }));
}

// The customer's booked seats of this show, drawn as theirs. Only with a token this browser
// already has: a first visit mints none just to find it has no bookings.
async function loadOwned() {
  if (!customerId()) return;
  try {
    const { bookings } = await customerApi("GET", "/me/bookings");
    const before = [...owned.keys()];
    owned.clear();
    for (const b of bookings) {
      if (b.show_id !== showId || b.status !== "CONFIRMED") continue;
      for (const label of b.seats) {
        const i = store.index.get(label);
        if (i !== undefined) owned.set(i, b.reference);
      }
    }
    view.update(before.concat([...owned.keys()]));
    showLegend();
  } catch (err) {
    console.warn("could not load your bookings", err);
  }
}

function renderHead() {
  $("title").textContent = show.title;
  document.title = `${show.title} · Choose your seats · Modex Tickets`;
  $("meta").textContent = `${show.venue} · ${showDate(show.starts_at)}`;
  $("status-badge").replaceChildren(statusBadge(show.status));
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

let infoSeat = -1;
function seatInfo(i) {
  if (i < 0 || !store) return;
  infoSeat = i;
  const cat = store.category[i];
  const parts = [seatName(store, i, heldIdx.has(i) ? MINE : owned.has(i) ? OWNED : NONE)];
  if (store.section[i]) parts.push(store.section[i]);
  if (cat && cat !== "standard" && cat.toLowerCase() !== store.section[i].toLowerCase()) parts.push(cat[0].toUpperCase() + cat.slice(1));
  $("seat-info").textContent = parts.join(" · ");
}

// ---------- picking ----------

function toggle(i) {
  if (selected.has(i)) selected.delete(i);
  else selected.add(i);
  view.update([i]);
  renderPanel();
}

function activate(i) {
  const label = store.labels[i];
  const [row, num] = splitLabel(label);
  if (booking) {
    booking = null;
    renderPanel();
  }
  if (heldIdx.has(i)) {
    message(`Row ${row} seat ${num} is already held for you.`, "info");
    return;
  }
  if (owned.has(i)) {
    message(`Row ${row} seat ${num} is yours: booking ${owned.get(i)}. See My bookings to cancel it.`, "info");
    return;
  }
  if (hold) {
    message("Confirm or release the seats you hold before picking others.", "info");
    return;
  }
  if (!selected.has(i) && store.status[i] !== AVAILABLE) {
    message(`Row ${row} seat ${num} is ${store.status[i] === BOOKED ? "already sold" : "held by someone else"}. Please pick another seat.`, "info");
    return;
  }
  if (show && show.status !== "ON_SALE") {
    message(`Sales are closed for this show (${STATUS_LABEL[show.status] || show.status}).`, "info");
    return;
  }
  if (!selected.has(i) && selected.size >= MAX_PICK) {
    message(`You can pick up to ${MAX_PICK} seats at a time.`, "info");
    return;
  }
  const adding = !selected.has(i);
  toggle(i);
  message("");
  say.polite(`Row ${row} seat ${num} ${adding ? "added" : "removed"}. ${plural(selected.size, "seat")} picked.`);
}

function clearPicks() {
  const was = [...selected];
  selected.clear();
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
  if (hold) localStorage.setItem(holdKey, JSON.stringify(hold));
  else localStorage.removeItem(holdKey);
}

function setLocalStatus(indices, status) {
  for (const i of indices) store.status[i] = status;
  view.update(indices);
  if (indices.includes(infoSeat)) seatInfo(infoSeat);
}

function adoptHold(h, idem) {
  hold = { hold_id: h.hold_id, seats: h.seats, expires_at: h.expires_at, extensions_left: h.extensions_left, idem: idem || uuid(), started: hold?.started || Date.now() };
  const idx = h.seats.map((l) => store.index.get(l)).filter((i) => i !== undefined);
  const old = [...heldIdx];
  heldIdx = new Set(idx);
  view.update(old.concat(idx));
  saveHold();
}

function dropHold() {
  const old = [...heldIdx];
  hold = null;
  heldIdx = new Set();
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
    retryUntil = Date.now() + secs * 1000;
    message(`${err.status === 429 ? "Too many requests" : "The box office is busy"}. Please wait ${plural(secs, "second")} and try again.`);
    setTimeout(renderPanel, secs * 1000 + 50);
    return;
  }
  message(err.message || `Could not ${what}.`);
}

async function holdSeats() {
  if (busy || !selected.size) return;
  busy = true;
  renderPanel();
  const idx = [...selected].sort((a, b) => a - b);
  const labels = idx.map((i) => store.labels[i]);
  try {
    const h = await customerApi("POST", `/shows/${showId}/holds`, { body: { seats: labels } });
    selected.clear();
    adoptHold(h);
    setLocalStatus([...heldIdx], HELD);
    focusNext = () => $("confirm");
    message(`${plural(h.seats.length, "seat")} held for you: ${labelsText(h.seats)}. Confirm to book.`, "ok");
  } catch (err) {
    if (err instanceof ApiError && err.status === 409 && err.code === "seats_unavailable") {
      const taken = err.body.seats || [];
      for (const l of taken) {
        const i = store.index.get(l);
        if (i !== undefined) selected.delete(i);
      }
      view.update(idx);
      const n = taken.length;
      message(
        `Sorry, ${n === 1 ? "seat" : "seats"} ${labelsText(taken)} ${n === 1 ? "was" : "were"} just taken by someone else. ` +
          (selected.size ? "Your other seats are still picked: try again." : "Please pick other seats."),
      );
    } else if (err instanceof ApiError && err.status === 422) {
      message(`We couldn't hold those seats: ${err.message}`);
    } else {
      handleError(err, "hold your seats");
    }
  } finally {
    busy = false;
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
  const onSale = show && show.status === "ON_SALE";
  const off = !store || !onSale || !!hold || retryUntil > Date.now();
  $("best-hold").disabled = off;
  $("best-hold").setAttribute("aria-disabled", busy ? "true" : "false");
  $("best").dataset.state = hold || booking ? "holding" : selected.size ? "picking" : onSale ? "ready" : "closed";
}

async function holdBest(e) {
  e.preventDefault();
  if (busy || hold || !store) return;
  const count = Number($("best-count").value);
  const category = $("best-category-field").hidden ? "" : $("best-category").value;
  const best = { count, allow_split: $("best-split").checked };
  if (category) best.category = category;
  busy = true;
  renderPanel();
  try {
    const h = await customerApi("POST", `/shows/${showId}/holds`, { body: { best } });
    const was = [...selected];
    selected.clear();
    view.update(was);
    adoptHold(h);
    setLocalStatus([...heldIdx], HELD);
    focusNext = () => $("confirm");
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
    busy = false;
    renderPanel();
  }
}
$("best-form").addEventListener("submit", holdBest);

async function extend() {
  if (!hold || busy) return;
  busy = true;
  renderPanel();
  try {
    const h = await customerApi("POST", `/holds/${encodeURIComponent(hold.hold_id)}/extend`);
    adoptHold({ ...hold, ...h }, hold.idem);
    const left = Math.max(0, Math.round((Date.parse(h.expires_at) - Date.now()) / 1000));
    message(`You have more time: ${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")} left to confirm.`, "ok");
  } catch (err) {
    if (err instanceof ApiError && (err.status === 409 || err.status === 404)) {
      if (err.code === "extend_limit_reached") {
        hold.extensions_left = 0;
        message(err.message || "No more extensions for this hold.");
      } else {
        expired(err.message);
      }
    } else handleError(err, "extend your hold");
  } finally {
    busy = false;
    renderPanel();
  }
}

async function confirm() {
  if (!hold || busy) return;
  busy = true;
  renderPanel();
  try {
    const b = await customerApi("POST", `/holds/${encodeURIComponent(hold.hold_id)}/confirm`, { headers: { "Idempotency-Key": hold.idem } });
    const idx = [...heldIdx];
    dropHold();
    setLocalStatus(idx, BOOKED);
    booking = { id: b.id, reference: b.reference, seatIdx: idx };
    focusNext = () => $("basket-heading");
    for (const i of idx) owned.set(i, b.reference);
    view.update(idx);
    showLegend();
    message(`Booking confirmed: ${labelsText(b.seats || idx.map((i) => store.labels[i]))}. Your reference is ${(b.reference || "").split("").join(" ")}.`, "ok");
  } catch (err) {
    if (err instanceof ApiError && (err.status === 409 || err.status === 404)) expired(err.message);
    else handleError(err, "confirm your booking");
  } finally {
    busy = false;
    renderPanel();
  }
}

async function release() {
  if (!hold || busy) return;
  busy = true;
  renderPanel();
  try {
    await customerApi("DELETE", `/holds/${encodeURIComponent(hold.hold_id)}`);
    const idx = [...heldIdx];
    dropHold();
    setLocalStatus(idx, AVAILABLE);
    focusNext = seatToFocus;
    message("Seats released. Pick seats on the map again.", "info");
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      dropHold();
      message("Those seats were already released.", "info");
    } else handleError(err, "release your seats");
  } finally {
    busy = false;
    renderPanel();
  }
}

function expired(detail) {
  const idx = [...heldIdx];
  dropHold();
  if (idx.includes(infoSeat)) setTimeout(() => seatInfo(infoSeat), 0); // no longer "held by you"
  for (const i of idx) if (store.status[i] === HELD) store.status[i] = AVAILABLE;
  view.update(idx);
  message(`Your hold has expired and the seats went back on sale.${detail ? " (" + detail + ")" : ""} Pick seats again to continue.`);
  renderPanel();
}

let warned = false;
function tick() {
  if (!hold) {
    warned = false;
    return;
  }
  const left = Math.max(0, Date.parse(hold.expires_at) - Date.now());
  const secs = Math.ceil(left / 1000);
  $("countdown").textContent = `${Math.floor(secs / 60)}:${String(secs % 60).padStart(2, "0")}`;
  $("hold-timer").querySelector(".countdown").classList.toggle("urgent", secs <= 10);
  const span = Math.max(1, Date.parse(hold.expires_at) - (hold.started || Date.now()));
  $("timebar").style.width = `${Math.min(100, (left / span) * 100)}%`;
  if (secs <= 10 && !warned && secs > 0) {
    warned = true;
    say.assertive(`${secs} seconds left to confirm your seats.`);
  }
  if (secs > 10) warned = false;
  if (left <= 0 && !busy) expired();
}

// ---------- live updates ----------

function onSeats(st, changed) {
  for (const i of changed) if (owned.has(i) && st.status[i] !== BOOKED) owned.delete(i); // cancelled
  view.update(changed);
  if (infoSeat >= 0 && changed.includes(infoSeat)) seatInfo(infoSeat);
  const lost = [];
  for (const i of changed) {
    if (selected.has(i) && st.status[i] !== AVAILABLE) {
      selected.delete(i);
      lost.push(st.labels[i]);
    }
  }
  const soldOut = st.counts().AVAILABLE === 0;
  if (soldOut !== ($("basket").dataset.soldOut === "true") && !hold && !booking) renderPanel();
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
  clearInterval(setConn.t);
  const text = $("conn-text");
  if (s.state === "connected") text.textContent = "Live";
  else if (s.state === "reconnecting" && s.retryAt) {
    const upd = () => (text.textContent = `Reconnecting in ${Math.max(0, Math.ceil((s.retryAt - Date.now()) / 1000))} s`);
    upd();
    setConn.t = setInterval(upd, 500);
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
    show = await api("GET", `/shows/${showId}`);
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
      store = st;
      centreSections(st);
      view.setStore(st);
      fillBestCategories(st);
      showLegend();
      loadOwned();
      // no prices on this show: the hint does not promise one
      if (!TOUCH && !st.price.some((p) => p)) $("seat-info").textContent = "Hover over or tab to a seat to see its row and number.";
      // re-attach a hold kept from before a reload
      heldIdx = new Set((hold?.seats || []).map((l) => st.index.get(l)).filter((i) => i !== undefined));
      for (const i of [...selected]) if (i >= st.count) selected.delete(i);
      renderPanel();
    },
    onSeats,
    onPresence: (n) => ($("watchers").textContent = `${plural(n, "person", "people")} viewing`),
    onAnnouncement: showAnnouncement,
    onShow: (frame) => {
      const was = show ? show.status : null;
      show = { ...show, ...frame };
      delete show.type;
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
    if (saved && Date.parse(saved.expires_at) > Date.now()) hold = saved;
    else localStorage.removeItem(holdKey);
  } catch {
    localStorage.removeItem(holdKey);
  }
  await live.ready;
  ticker = setInterval(tick, 250);
}

start();
