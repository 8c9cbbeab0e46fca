// /queue/{id}: the show's waiting room. Joins the queue (again is harmless: one place per
// customer), shows the position and wait the server pushes over the WebSocket (polls as a
// fallback), and moves to the seat map with the admission token when it is our turn.
import { api, customerApi, customerToken, admission, ApiError } from "./api.js";
import { backoffDelay } from "./live.js";
import { showDate, showIdFromPath } from "./util.js";

const showId = showIdFromPath();
const $ = (id) => document.getElementById(id);
const POLL_MS = 15_000;

function wait(seconds) {
  if (seconds < 60) return "under a minute";
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `about ${minutes} min`;
  return `about ${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

function render(place) {
  if (place.position === null || place.position === undefined) {
    $("lead").textContent = "You are in the waiting room. When sales open, everyone here gets a random place in line.";
    $("position").textContent = "–";
  } else {
    $("lead").textContent = "You are in line.";
    $("position").textContent = place.position.toLocaleString();
  }
  $("eta").textContent = wait(place.eta_s);
}

function admitted(token) {
  admission.set(showId, token);
  $("lead").textContent = "It's your turn! Taking you to the seat map…";
  location.assign(`/map/${showId}`);
}

function listen(token) {
  let attempt = 0;
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws?token=${encodeURIComponent(token)}`;
  const connect = () => {
    const ws = new WebSocket(url);
    ws.onopen = () => (attempt = 0);
    ws.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      if (frame.show_id !== showId) return;
      if (frame.type === "queue") render(frame);
      if (frame.type === "admitted") admitted(frame.token);
    };
    ws.onclose = () => setTimeout(connect, backoffDelay(attempt++));
  };
  connect();
}

async function poll() {
  try {
    const place = await customerApi("GET", `/shows/${showId}/queue`);
    if (place.admitted) admitted(place.admission);
    else render(place);
  } catch {
    /* the socket keeps us informed; try again later */
  }
}

async function start() {
  try {
    const show = await api("GET", `/shows/${showId}`);
    $("title").textContent = `Waiting room: ${show.title}`;
    $("meta").textContent = `${show.venue} · ${showDate(show.starts_at)}`;
    const place = await customerApi("POST", `/shows/${showId}/queue`);
    if (place.admitted) return admitted(place.admission);
    render(place);
    listen(await customerToken());
    setInterval(poll, POLL_MS);
  } catch (err) {
    if (err instanceof ApiError && err.code === "no_waiting_room") {
      location.replace(`/map/${showId}`); // no queue for this show: straight to the seats
      return;
    }
    $("page-error").textContent = err.message;
  }
}

start();
