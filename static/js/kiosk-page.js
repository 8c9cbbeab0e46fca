// /kiosk/{id}: full-screen read-only venue display. Runs for days: no reloads, no growing
// arrays or logs; the seat map, counts and status lines reuse the same DOM/canvas.
import { api } from "./api.js";
import { liveShow, AVAILABLE } from "./live.js";
import { SeatMap, legend, categoryColours } from "./seatmap.js";
import { el, money, showDate, showIdFromPath, clockTime, STATUS_LABEL } from "./util.js";

const showId = showIdFromPath();
const $ = (id) => document.getElementById(id);
const view = new SeatMap($("seatmap"), { interactive: false, fit: "contain", minText: 20 });
window.modexView = view;

let show = null;
let store = null;
let catRows = new Map(); // category -> {count, price, li}
let countsDue = false;
let lastUpdate = null;
let conn = { state: "connecting" };
let announcementTimer = 0;
const ANNOUNCEMENT_MS = 30 * 60 * 1000;
// a reconnect within a moment is not worth alarming a room: dim the map after DIM_MS, then
// a banner readable from across the room after BANNER_MS
const DIM_MS = 1500;
const BANNER_MS = 5000;
let lostSince = 0;
let available = null;

// The headline in the big type: always true of the show, whatever the count says.
// -> [big text, the line under it, the footer's line, state for styling]
function headline() {
  const status = show ? show.status : null;
  if (status === "CANCELLED") return ["CANCELLED", "This performance will not take place", "Cancelled", "cancelled"];
  if (status === "ENDED") return ["ENDED", "This performance has ended", "Ended", "ended"];
  if (status && status !== "ON_SALE") return ["OFF SALE", "Tickets are not on sale yet", STATUS_LABEL[status] || status, "off-sale"];
  if (available === null) return ["–", "seats available", "", "loading"];
  if (available === 0) return ["SOLD OUT", "No seats available", "Sold out", "sold-out"];
  return [available.toLocaleString(), `of ${store.count.toLocaleString()} seats available`, "Tickets on sale now", "on-sale"];
}

function renderHeadline() {
  const [big, label, foot, state] = headline();
  $("avail-total").textContent = big;
  $("avail-label").textContent = label;
  $("status-text").textContent = foot;
  $("headline").dataset.state = state;
  document.body.dataset.show = state;
}

// the online waiting room's length, while the show has one (GET /shows/{id}'s queue)
const QUEUE_POLL_MS = 5000;
async function renderQueue() {
  try {
    const fresh = await api("GET", `/shows/${showId}`);
    const waiting = fresh.queue ? fresh.queue.waiting : null;
    $("queue-length").hidden = !waiting;
    if (waiting) $("queue-length").textContent = `${waiting.toLocaleString()} people in the online queue`;
  } catch {
    /* the next poll tries again */
  }
}

function renderHead() {
  $("title").textContent = show.title;
  document.title = `${show.title} · Venue display`;
  $("meta").textContent = `${show.venue} · ${showDate(show.starts_at)}`;
  renderHeadline();
}

function buildCategories() {
  const cats = categoryColours(store);
  catRows = new Map();
  const items = [];
  for (const [name, c] of cats) {
    const count = el("span", { class: "count" });
    const dot = el("span", { class: "swatch-dot", "aria-hidden": "true" });
    dot.style.setProperty("--cat", c.colour);
    const li = el("li", { "data-category": name }, dot, el("span", {}, name[0].toUpperCase() + name.slice(1)), count, el("span", { class: "price" }, c.price ? `${money(c.price)} per seat` : ""));
    catRows.set(name, { count, c });
    items.push(li);
  }
  $("cats").replaceChildren(...items);
  $("legend").replaceChildren(legend(store, { showMine: false, showSelected: false }));
}

function renderCounts() {
  countsDue = false;
  if (!store) return;
  const per = new Map();
  let total = 0;
  for (let i = 0; i < store.count; i++) {
    if (store.status[i] !== AVAILABLE) continue;
    total++;
    const c = store.category[i];
    per.set(c, (per.get(c) || 0) + 1);
  }
  available = total;
  renderHeadline();
  for (const [name, row] of catRows) row.count.textContent = (per.get(name) || 0).toLocaleString();
}

function scheduleCounts() {
  if (countsDue) return;
  countsDue = true;
  setTimeout(renderCounts, 300);
}

function renderStatus() {
  const text = $("conn-text");
  $("conn").dataset.state = conn.state;
  if (conn.state === "connected") text.textContent = "Live";
  else if (conn.state === "reconnecting" && conn.retryAt) text.textContent = `Reconnecting in ${Math.max(0, Math.ceil((conn.retryAt - Date.now()) / 1000))} s`;
  else if (conn.state === "reconnecting") text.textContent = "Reconnecting…";
  else if (conn.state === "stopped") text.textContent = "Offline";
  else text.textContent = "Connecting…";
  // anything but live (reconnecting, stopped, never connected) is an outage to the room
  if (conn.state === "connected") lostSince = 0;
  else if (!lostSince) lostSince = Date.now();
  const lostFor = lostSince ? Date.now() - lostSince : 0;
  $("kiosk-map").classList.toggle("is-stale", lostFor >= DIM_MS);
  $("outage").hidden = lostFor < BANNER_MS;
  document.body.dataset.live = lostFor >= DIM_MS ? "lost" : "live";
  if (lastUpdate) {
    const ago = Math.round((Date.now() - lastUpdate) / 1000);
    $("updated").textContent = `Updated ${clockTime(new Date(lastUpdate))}${ago >= 60 ? ` (${Math.floor(ago / 60)} min ago)` : ""}`;
  }
}

function notFound() {
  $("title").textContent = "Show not found";
  $("conn").hidden = true;
  $("updated").textContent = "";
  $("kiosk-map").hidden = true;
  $("avail-total").textContent = "–";
  $("avail-label").textContent = "No such show";
}

async function start() {
  if (!showId) {
    $("title").textContent = "No show selected";
    return;
  }
  for (let attempt = 0; !show; attempt++) {
    try {
      show = await api("GET", `/shows/${showId}`);
    } catch (err) {
      if (err.status === 404) {
        notFound();
        return;
      }
      await new Promise((r) => setTimeout(r, Math.min(16, 2 ** attempt) * 1000));
    }
  }
  renderHead();
  const live = liveShow(showId, {
    counted: false, // a display, not a person watching
    onLayout: (st) => {
      store = st;
      view.setStore(st);
      buildCategories();
      renderCounts();
      lastUpdate = Date.now();
      renderStatus();
    },
    onSeats: (st, changed) => {
      view.update(changed);
      scheduleCounts();
      lastUpdate = Date.now();
      renderStatus();
    },
    onAnnouncement: (message, frame) => {
      $("announcement-text").textContent = message;
      // a snapshot's announcement carries when it was made
      $("announcement-time").textContent = clockTime(frame && frame.at ? new Date(frame.at) : new Date());
      $("announcement").hidden = false;
      // an unattended display drops an old announcement by itself
      clearTimeout(announcementTimer);
      announcementTimer = setTimeout(() => ($("announcement").hidden = true), ANNOUNCEMENT_MS);
    },
    onShow: (frame) => {
      show = { ...show, ...frame };
      renderHead();
    },
    onState: (s) => {
      conn = s;
      renderStatus();
    },
  });
  window.modexLive = live;
  setInterval(renderStatus, 500);
  renderQueue();
  setInterval(renderQueue, QUEUE_POLL_MS);
}

start();
