// /admin: create shows, change them, broadcast announcements. The admin token stays in
// this tab only (sessionStorage).
import { api, ApiError, adminToken } from "./api.js";
import { el, showDate, statusBadge } from "./util.js";
import { seatPicker } from "./admin-seats.js";
import { salesReport } from "./admin-report.js";

const $ = (id) => document.getElementById(id);
let shows = [];
let current = null;

function message(text, kind = "ok") {
  const m = $("message");
  m.textContent = text || "";
  m.className = `notice ${text ? "notice-" + kind : ""}`;
}

// msgspec's "Expected `int` >= 1 - at `$.rows`" as a person would say it
const FIELD_NAMES = { title: "Title", venue: "Venue", starts_at: "Start time", hold_seconds: "Hold time", rows: "Rows", seats_per_row: "Seats per row", sections: "Sections", name: "Section name", category: "Category", price_cents: "Price", status: "Status", message: "Message" };
function humanDetail(text) {
  const at = /- at `\$\.?([^`]*)`/.exec(text || "");
  const path = at ? at[1].replace(/\[(\d+)\]/g, (_, n) => ` ${Number(n) + 1} `).split(".").filter(Boolean) : [];
  const field = path.length ? path.map((p) => FIELD_NAMES[p.trim()] || p.trim()).join(" › ") : "";
  let what = (text || "").replace(/ - at `[^`]*`/, "");
  let m;
  if ((m = /Expected `(?:int|float)` >= (\d+)/.exec(what))) what = `must be at least ${m[1]}`;
  else if ((m = /Expected `(?:int|float)` <= (\d+)/.exec(what))) what = `must be at most ${Number(m[1]).toLocaleString()}`;
  else if (/Expected `str` of length >= 1/.test(what)) what = "cannot be empty";
  else if ((m = /Expected `str` of length <= (\d+)/.exec(what))) what = `must be at most ${m[1]} characters`;
  else if (/Expected `int`/.test(what)) what = "must be a whole number";
  else if (/Expected `datetime`/.test(what)) what = "must be a date and time";
  return field ? `${field}: ${what}` : what;
}

function errorText(err) {
  if (!(err instanceof ApiError)) return String(err);
  if (err.status === 422) return humanDetail(err.message);
  if (err.status === 401) return "That token was not accepted (missing, expired or malformed). Paste a fresh admin token.";
  if (err.status === 403) return "That token is not an admin token.";
  if (err.status === 429) return `Too many requests: try again in ${err.retryAfter || 1} s.`;
  return err.message;
}

function adminCall(method, path, body, headers = {}) {
  const token = adminToken.get();
  if (!token) {
    return Promise.reject(new ApiError(401, { error: "unauthorized", message: "Sign in with an admin token first." }));
  }
  return api(method, path, { body, token, headers });
}

// One Idempotency-Key per show being created: a retry or a second click gets the same show.
// A new key once a show is made (or the form changes).
// (getRandomValues, not randomUUID: the page may be served over plain http off localhost)
const newKey = () => Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
let createKey = newKey();

function tokenState() {
  const t = adminToken.get();
  let who = "";
  try {
    const claims = JSON.parse(atob(t.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    who = `${claims.sub} (${claims.role})${claims.exp ? ", expires " + showDate(new Date(claims.exp * 1000).toISOString()) : ""}`;
  } catch {
    who = t ? "a token that does not look like a JWT" : "";
  }
  $("token-state").textContent = t ? `Signed in as ${who}.` : "Not signed in.";
  $("token").value = t;
}

// A token's claims as far as the page can read them (the server checks the signature)
function claimsOf(t) {
  const parts = t.split(".");
  if (parts.length !== 3) return null;
  try {
    return JSON.parse(atob(parts[1].replace(/-/g, "+").replace(/_/g, "/")));
  } catch {
    return null;
  }
}

$("token-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const t = $("token").value.trim();
  const claims = claimsOf(t);
  let problem = !t ? "Paste a token first." : !claims ? "That is not a token (expected three dot-separated parts, as printed by: modex token NAME --role admin)." : claims.role !== "admin" ? `That is a ${claims.role || "role-less"} token, not an admin token.` : claims.exp && claims.exp * 1000 <= Date.now() ? `That token expired on ${showDate(new Date(claims.exp * 1000).toISOString())}.` : null;
  if (!problem) {
    // ask the server: only it can check the signature
    try {
      await api("GET", "/admin/bookings?user=-", { token: t });
    } catch (err) {
      if (err instanceof ApiError && (err.status === 401 || err.status === 403)) problem = `The server refused that token: ${err.message}.`;
    }
  }
  if (problem) {
    $("token").setAttribute("aria-invalid", "true");
    message(problem, "error");
    return;
  }
  $("token").removeAttribute("aria-invalid");
  adminToken.set(t);
  tokenState();
  message("Signed in. The token is kept in this tab until it closes.");
});
$("token-clear").addEventListener("click", () => {
  adminToken.set("");
  tokenState();
  message("Signed out.", "info");
});

// ---- local date-time <-> ISO with timezone ----

function toIso(local) {
  if (!local) return null;
  const d = new Date(local); // datetime-local is read as local time
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

function toLocalInput(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

// ---- sections editor ----

let sectionSeq = 0;
function sectionRow(values = {}) {
  const n = ++sectionSeq;
  const f = (name, label, attrs) =>
    el("div", { class: "field" }, el("label", { for: `s${n}-${name}` }, label), el("input", { id: `s${n}-${name}`, "data-name": name, ...attrs }));
  const row = el(
    "div",
    { class: "section-row" },
    f("name", "Section", { value: values.name || "", maxlength: 60 }),
    f("rows", "Rows", { type: "number", min: 1, max: 702, value: values.rows || 5 }),
    f("seats_per_row", "Seats/row", { type: "number", min: 1, max: 9999, value: values.seats_per_row || 20 }),
    f("category", "Category", { value: values.category || "", maxlength: 40, placeholder: "standard" }),
    f("price", "Price (€)", { type: "number", min: 0, step: "0.01", value: values.price ?? "" }),
    el("button", { type: "button", class: "btn btn-small btn-danger", "aria-label": `Remove section ${n}`, onclick: () => row.remove() }, "Remove"),
  );
  return row;
}

$("add-section").addEventListener("click", () => $("section-rows").append(sectionRow()));
$("section-rows").append(sectionRow({ name: "Stalls", rows: 10, seats_per_row: 24, category: "stalls", price: 65 }), sectionRow({ name: "Balcony", rows: 6, seats_per_row: 28, category: "balcony", price: 40 }));

for (const radio of document.querySelectorAll('input[name="layout"]')) {
  radio.addEventListener("change", () => {
    const sections = document.querySelector('input[name="layout"]:checked').value === "sections";
    $("layout-grid").hidden = sections;
    $("layout-sections").hidden = !sections;
  });
}

function defaultStart() {
  const d = new Date(Date.now() + 7 * 86400_000);
  d.setHours(19, 30, 0, 0);
  return toLocalInput(d.toISOString());
}
$("c-starts").value = defaultStart();

$("create-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const body = {
    title: $("c-title").value.trim(),
    venue: $("c-venue").value.trim(),
    starts_at: toIso($("c-starts").value),
    status: $("c-status").value,
  };
  if (!body.title || !body.venue || !body.starts_at) {
    message("Please give a title, a venue and a start time.", "error");
    return;
  }
  if (Date.parse(body.starts_at) < Date.now()) {
    $("c-starts").setAttribute("aria-invalid", "true");
    message("Start time: that is in the past. Choose a future date and time.", "error");
    $("c-starts").focus();
    return;
  }
  $("c-starts").removeAttribute("aria-invalid");
  for (const input of $("create-form").querySelectorAll('input[type="number"]')) {
    if (input.closest("[hidden]") || input.value === "") continue;
    const v = Number(input.value);
    const lo = input.min === "" ? -Infinity : Number(input.min), hi = input.max === "" ? Infinity : Number(input.max);
    if (!Number.isFinite(v) || v < lo || v > hi || (input.step !== "0.01" && !Number.isInteger(v))) {
      const label = input.labels && input.labels[0] ? input.labels[0].textContent : input.name;
      input.setAttribute("aria-invalid", "true");
      message(`${label}: use a whole number from ${lo} to ${hi.toLocaleString()}.`, "error");
      input.focus();
      return;
    }
    input.removeAttribute("aria-invalid");
  }
  if ($("c-hold").value) body.hold_seconds = Number($("c-hold").value);
  if (document.querySelector('input[name="layout"]:checked').value === "sections") {
    body.sections = [...$("section-rows").children].map((row) => {
      const v = (name) => row.querySelector(`[data-name="${name}"]`).value.trim();
      const s = { name: v("name"), rows: Number(v("rows")), seats_per_row: Number(v("seats_per_row")) };
      if (v("category")) s.category = v("category");
      if (v("price") !== "") s.price_cents = Math.round(Number(v("price")) * 100);
      return s;
    });
    if (!body.sections.length) {
      message("Add at least one section.", "error");
      return;
    }
  } else {
    body.rows = Number($("c-rows").value);
    body.seats_per_row = Number($("c-per-row").value);
  }
  if ($("create").disabled) return; // a double click sends one show
  $("create").disabled = true;
  try {
    const show = await adminCall("POST", "/admin/shows", body, { "Idempotency-Key": createKey });
    createKey = newKey();
    message(`Created “${show.title}” (show ${show.id}, ${show.seats_total.toLocaleString()} seats).`);
    $("c-title").value = "";
    $("c-venue").value = "";
    await loadShows();
    select(show.id);
  } catch (err) {
    message(`Could not create the show: ${errorText(err)}`, "error");
  } finally {
    $("create").disabled = false;
  }
});

// ---- show list ----

async function loadShows() {
  try {
    const data = await api("GET", "/shows");
    shows = data.shows || [];
    renderShows();
    fillShowChoice();
  } catch (err) {
    message(`Could not load shows: ${errorText(err)}`, "error");
  }
}

function renderShows() {
  $("show-rows").replaceChildren(
    ...shows.map((s) =>
      el(
        "tr",
        { "data-show": s.id, class: current === s.id ? "is-current" : "" },
        el("td", {}, el("strong", {}, s.title), el("br"), el("span", { class: "muted" }, `${s.venue} · #${s.id}`)),
        el("td", {}, showDate(s.starts_at)),
        el("td", {}, statusBadge(s.status)),
        el("td", {}, `${(s.seats_available ?? s.seats_total).toLocaleString()} / ${s.seats_total.toLocaleString()}`),
        el(
          "td",
          {},
          el("button", { type: "button", class: "btn btn-small btn-ghost", "aria-label": `Manage ${s.title}`, onclick: () => select(s.id) }, "Manage"),
        ),
      ),
    ),
  );
}

function select(id) {
  current = id;
  const s = shows.find((x) => x.id === id);
  if (!s) return;
  $("edit-card").hidden = false;
  $("edit-heading").textContent = `Manage “${s.title}”`;
  $("e-title").value = s.title;
  $("e-starts").value = toLocalInput(s.starts_at);
  $("e-status").value = s.status;
  renderShows();
  // the show's seats and its report, under the forms
  $("seats-card").hidden = false;
  $("report-card").hidden = false;
  $("seats-heading").textContent = `Seats of “${s.title}”`;
  $("report-heading").textContent = `Sales report: “${s.title}”`;
  seats.open(id);
  report.open(id);
  $("edit-heading").scrollIntoView({ block: "nearest" });
}

// a change to the form is another show: a new key
$("create-form").addEventListener("input", () => { createKey = newKey(); });

// Delete asks twice: the first click arms the button, the second (within 5 s) deletes.
let deleteArmed = null;
$("delete-show").addEventListener("click", async () => {
  const s = shows.find((x) => x.id === current);
  if (!s) return;
  if (deleteArmed !== current) {
    deleteArmed = current;
    $("delete-show").textContent = `Click again to delete “${s.title}”`;
    setTimeout(() => { deleteArmed = null; $("delete-show").textContent = "Delete show…"; }, 5000);
    return;
  }
  deleteArmed = null;
  $("delete-show").textContent = "Delete show…";
  try {
    await adminCall("DELETE", `/admin/shows/${current}`);
    message(`Deleted “${s.title}”.`);
    current = null;
    $("edit-card").hidden = true;
    $("seats-card").hidden = true;
    $("report-card").hidden = true;
    await loadShows();
  } catch (err) {
    message(err instanceof ApiError && err.status === 409
      ? `“${s.title}” has bookings: set its status to Cancelled instead.`
      : `Could not delete the show: ${errorText(err)}`, "error");
  }
});

$("edit-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const s = shows.find((x) => x.id === current);
  if (!s) return;
  const body = {};
  if (!$("e-title").value.trim()) {
    message("Title: a show needs a title; it cannot be empty.", "error");
    $("e-title").focus();
    return;
  }
  if ($("e-title").value.trim() !== s.title) body.title = $("e-title").value.trim();
  const iso = toIso($("e-starts").value);
  if (iso && toLocalInput(iso) !== toLocalInput(s.starts_at)) body.starts_at = iso;
  if ($("e-status").value !== s.status) body.status = $("e-status").value;
  if (!Object.keys(body).length) {
    message("Nothing to change.", "info");
    return;
  }
  $("save").disabled = true;
  try {
    await adminCall("PATCH", `/admin/shows/${current}`, body);
    message("Saved. Everyone watching sees the change now.");
    await loadShows();
    select(current);
  } catch (err) {
    message(`Could not save: ${errorText(err)}`, "error");
  } finally {
    $("save").disabled = false;
  }
});

$("broadcast-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = $("b-message").value.trim();
  if (!text || !current) return;
  $("broadcast").disabled = true;
  try {
    await adminCall("POST", `/admin/shows/${current}/broadcast`, { message: text });
    message("Announcement sent to everyone watching.");
    $("b-message").value = "";
  } catch (err) {
    message(`Could not send: ${errorText(err)}`, "error");
  } finally {
    $("broadcast").disabled = false;
  }
});

// ---- box office: find a booking by reference, customer, show or seat; cancel it ----

function showTitle(id) {
  const s = shows.find((x) => x.id === id);
  return s ? s.title : `Show ${id}`;
}

function fillShowChoice() {
  const choice = $("f-show");
  const was = choice.value;
  choice.replaceChildren(el("option", { value: "" }, "Any show"), ...shows.map((s) => el("option", { value: String(s.id) }, `${s.title} (#${s.id})`)));
  choice.value = was;
}

async function findBookings() {
  const params = new URLSearchParams();
  for (const [name, input] of [["reference", "f-ref"], ["user", "f-user"], ["show_id", "f-show"], ["seat", "f-seat"]]) {
    const v = $(input).value.trim();
    if (v) params.set(name, name === "seat" ? v.toUpperCase() : v);
  }
  if (!params.has("reference") && !params.has("user") && !params.has("show_id")) {
    $("find-state").textContent = params.has("seat") ? "Choose the show the seat is in." : "Type a reference, a customer id or choose a show.";
    return;
  }
  $("find").disabled = true;
  try {
    const { bookings } = await adminCall("GET", `/admin/bookings?${params}`);
    renderFound(bookings);
  } catch (err) {
    $("find-state").textContent = err instanceof ApiError && err.status === 422 ? "That is not a booking reference (8 letters and digits) or a seat label." : errorText(err);
  } finally {
    $("find").disabled = false;
  }
}

function renderFound(bookings) {
  $("find-state").textContent = bookings.length ? `${bookings.length} booking${bookings.length === 1 ? "" : "s"} found.` : "No booking matches.";
  $("found-table").hidden = !bookings.length;
  $("found-rows").replaceChildren(
    ...bookings.map((b) => {
      const actions = el("td", {});
      const row = el(
        "tr",
        { "data-booking": b.id, "data-reference": b.reference },
        el("td", {}, el("strong", { class: "ref-cell" }, b.reference)),
        el("td", {}, showTitle(b.show_id)),
        el("td", {}, b.seats.join(", ")),
        el("td", {}, el("button", { type: "button", class: "link-button", onclick: () => (($("f-user").value = b.user_id), ($("f-ref").value = ""), ($("f-show").value = ""), ($("f-seat").value = ""), findBookings()) }, b.user_id)),
        el("td", { "data-status": b.status }, b.status === "CONFIRMED" ? "Booked" : b.status === "CANCELLED" ? "Cancelled" : b.status),
        actions,
      );
      if (b.status === "CONFIRMED") {
        const ask = el("button", { type: "button", class: "btn btn-small btn-ghost", "aria-label": `Cancel booking ${b.reference}` }, "Cancel");
        ask.addEventListener("click", () => {
          const yes = el("button", { type: "button", class: "btn btn-small btn-danger", "aria-label": `Yes, cancel booking ${b.reference}` }, "Yes, cancel");
          const no = el("button", { type: "button", class: "btn btn-small btn-ghost" }, "Keep");
          no.addEventListener("click", () => (actions.replaceChildren(ask), ask.focus()));
          yes.addEventListener("click", () => cancelBooking(b, yes));
          actions.replaceChildren(yes, no);
          yes.focus();
        });
        actions.append(ask);
      }
      return row;
    }),
  );
}

async function cancelBooking(b, button) {
  button.disabled = true;
  try {
    await adminCall("DELETE", `/bookings/${encodeURIComponent(b.id)}`);
    message(`Booking ${b.reference} cancelled: ${b.seats.join(", ")} back on sale.`);
    await findBookings();
  } catch (err) {
    button.disabled = false;
    message(`Could not cancel ${b.reference}: ${errorText(err)}`, "error");
  }
}

$("find-form").addEventListener("submit", (e) => {
  e.preventDefault();
  findBookings();
});

// told beside the seat buttons, where the admin is looking
function seatsMessage(text, kind = "ok") {
  const m = $("seats-message");
  m.textContent = text || "";
  m.className = `notice ${text ? "notice-" + kind : ""}`;
}

const report = salesReport({ call: adminCall, errorText });
const seats = seatPicker({ call: adminCall, errorText, say: seatsMessage, onChanged: () => (report.refresh(), loadShows()), onLive: () => report.refresh(2000) });

tokenState();
loadShows();

