// Show list with availability, refreshed every few seconds (one small GET, DOM reused).
import { api } from "./api.js";
import { el, showDate, statusBadge, clockTime } from "./util.js";

const list = document.getElementById("shows");
const updated = document.getElementById("updated");
const error = document.getElementById("error");
const cards = new Map();
const REFRESH_MS = 4000;

function card(show) {
  const title = el("h2", { id: `show-${show.id}-title` });
  const meta = el("p", { class: "meta" });
  const badge = el("span");
  const text = el("span", { class: "avail-left" });
  const pct = el("span", { class: "avail-pct" });
  const bar = el("span");
  const meter = el("div", { class: "meter", "aria-hidden": "true" }, bar);
  const choose = el("a", { class: "btn", href: `/map/${show.id}` }, "Choose seats");
  const kiosk = el("a", { class: "btn btn-ghost", href: `/kiosk/${show.id}` }, "Venue display");
  const li = el(
    "li",
    { class: "show-card", "data-show": show.id, "aria-labelledby": `show-${show.id}-title` },
    el("div", { class: "card-top" }, badge),
    title,
    meta,
    el("div", { class: "avail" }, el("div", { class: "avail-text" }, text, pct), meter),
    el("div", { class: "actions" }, choose, kiosk),
  );
  const parts = { li, title, meta, badge, text, pct, bar, choose, kiosk };
  cards.set(show.id, parts);
  return parts;
}

function paint(parts, show) {
  parts.title.textContent = show.title;
  parts.meta.textContent = `${show.venue} · ${showDate(show.starts_at)}`;
  parts.badge.replaceChildren(statusBadge(show.status));
  const total = show.seats_total || 0;
  const left = show.seats_available ?? total;
  parts.text.textContent = show.status === "ON_SALE" || show.status === "SCHEDULED" ? `${left.toLocaleString()} of ${total.toLocaleString()} seats available` : `${total.toLocaleString()} seats`;
  parts.li.dataset.available = String(left);
  const p = total ? Math.floor((left / total) * 100) : 0;
  parts.pct.textContent = left === 0 && total ? "Sold out" : left > 0 && p === 0 ? "<1%" : `${p}%`;
  parts.bar.style.width = `${p}%`;
  parts.choose.setAttribute("aria-label", `Choose seats for ${show.title}`);
  parts.kiosk.setAttribute("aria-label", `Venue display for ${show.title}`);
  const buyable = show.status === "ON_SALE" && left > 0;
  parts.choose.textContent = buyable ? "Choose seats" : "See seats";
}

async function refresh() {
  try {
    const data = await api("GET", "/shows");
    const shows = data.shows || [];
    const seen = new Set();
    shows.forEach((show, idx) => {
      seen.add(show.id);
      const parts = cards.get(show.id) || card(show);
      paint(parts, show);
      if (list.children[idx] !== parts.li) list.insertBefore(parts.li, list.children[idx] || null);
    });
    for (const [id, parts] of cards) {
      if (!seen.has(id)) {
        parts.li.remove();
        cards.delete(id);
      }
    }
    if (!shows.length) {
      if (!list.querySelector(".empty")) list.append(el("li", { class: "empty" }, "No shows on sale right now. Check back soon."));
    } else {
      list.querySelector(".empty")?.remove();
    }
    error.textContent = "";
    updated.textContent = `Availability updated ${clockTime(new Date())}`;
  } catch (err) {
    error.textContent = `Couldn't load shows: ${err.message}`;
  } finally {
    setTimeout(refresh, document.hidden ? REFRESH_MS * 4 : REFRESH_MS);
  }
}

refresh();
