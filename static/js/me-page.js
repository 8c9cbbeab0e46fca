// /me: the customer's bookings (reference, show, seats) with cancel where the show allows it.
import { api, ApiError, customerApi, customerId } from "./api.js";
import { el, showDate, statusBadge, plural, STATUS_LABEL } from "./util.js";

const $ = (id) => document.getElementById(id);
// what a show's status allows (sql/shard/functions/seat_transactions.sql, show_allows)
const CANCELLABLE_SHOW = new Set(["SCHEDULED", "ON_SALE", "CANCELLED"]);
const shows = new Map();

function message(text, kind = "ok") {
  $("message").textContent = text || "";
  $("message").className = `notice ${text ? "notice-" + kind : ""}`;
}

async function showOf(id) {
  if (!shows.has(id)) shows.set(id, api("GET", `/shows/${id}`).catch(() => null));
  return shows.get(id);
}

function bookingCard(b, show) {
  const title = show ? show.title : `Show ${b.show_id}`;
  const headingId = `booking-${b.reference || b.id}`;
  const actions = el("div", { class: "btn-row" });
  const li = el(
    "li",
    { class: "card booking-card", "data-booking": b.id, "data-status": b.status, "aria-labelledby": headingId },
    el(
      "div",
      { class: "card-top" },
      el("span", { class: `badge ${b.status === "CONFIRMED" ? "badge-on_sale" : "badge-cancelled"}` }, b.status === "CONFIRMED" ? "Booked" : b.status === "CANCELLED" ? "Cancelled" : b.status),
      show && show.status !== "ON_SALE" ? statusBadge(show.status) : null,
    ),
    el("h2", { id: headingId }, el("a", { href: `/map/${b.show_id}` }, title)),
    show ? el("p", { class: "meta" }, `${show.venue} · ${showDate(show.starts_at)}`) : null,
    el("p", { class: "ref-line" }, el("span", { class: "muted" }, "Reference "), el("span", { class: "ref ref-big" }, b.reference || b.id)),
    el("p", {}, `${plural(b.seats.length, "seat")}: ${b.seats.join(", ")}`),
    actions,
  );
  if (b.status === "CONFIRMED" && show && CANCELLABLE_SHOW.has(show.status)) {
    const ask = el("button", { type: "button", class: "btn btn-ghost", "data-action": "cancel" }, "Cancel booking");
    ask.addEventListener("click", () => {
      // a second, explicit step: a mis-tap on a phone must not give seats away
      const yes = el("button", { type: "button", class: "btn btn-danger", "data-action": "confirm-cancel" }, `Yes, cancel ${b.reference || "it"}`);
      const no = el("button", { type: "button", class: "btn btn-ghost" }, "Keep it");
      no.addEventListener("click", () => {
        actions.replaceChildren(ask);
        ask.focus();
      });
      yes.addEventListener("click", () => cancel(b, yes));
      actions.replaceChildren(yes, no);
      yes.focus();
    });
    actions.append(ask);
  } else if (b.status === "CONFIRMED" && show) {
    actions.append(el("p", { class: "muted" }, `This show has ${show.status === "ENDED" ? "ended" : STATUS_LABEL[show.status] || show.status}: the booking can no longer be cancelled here.`));
  }
  return li;
}

async function cancel(b, button) {
  button.disabled = true;
  try {
    await customerApi("DELETE", `/bookings/${encodeURIComponent(b.id)}`);
    message(`Booking ${b.reference} cancelled. Its seats are back on sale.`);
    await load();
    $("heading").focus();
  } catch (err) {
    button.disabled = false;
    message(`Could not cancel: ${err instanceof ApiError ? err.message : "please try again."}`, "error");
  }
}

async function load() {
  if (!customerId()) {
    $("bookings").replaceChildren(el("li", { class: "card empty" }, "No bookings in this browser yet. ", el("a", { href: "/" }, "Find a show")));
    return;
  }
  try {
    const { bookings } = await customerApi("GET", "/me/bookings");
    const withShows = await Promise.all(bookings.map(async (b) => [b, await showOf(b.show_id)]));
    $("bookings").replaceChildren(
      ...(withShows.length ? withShows.map(([b, show]) => bookingCard(b, show)) : [el("li", { class: "card empty" }, "No bookings yet. ", el("a", { href: "/" }, "Find a show"))]),
    );
  } catch (err) {
    message(`Could not load your bookings: ${err instanceof ApiError ? err.message : "please try again."}`, "error");
  }
}

load();
