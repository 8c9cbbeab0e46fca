// Small formatting and DOM helpers shared by the pages.

const moneyFmt = new Map();

export function money(cents, currency = "EUR") {
  if (cents == null) return "";
  const whole = cents % 100 === 0;
  const key = currency + (whole ? "0" : "2");
  let f = moneyFmt.get(key);
  if (!f) {
    f = new Intl.NumberFormat("en-IE", {
      style: "currency",
      currency,
      minimumFractionDigits: whole ? 0 : 2,
      maximumFractionDigits: 2,
    });
    moneyFmt.set(key, f);
  }
  return f.format(cents / 100);
}

const dateFmt = new Intl.DateTimeFormat(undefined, {
  weekday: "short",
  day: "numeric",
  month: "short",
  year: "numeric",
  hour: "2-digit",
  minute: "2-digit",
});
const timeFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });

export function showDate(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso || "") : dateFmt.format(d);
}

export function clockTime(date) {
  return timeFmt.format(date);
}

export const STATUS_LABEL = {
  ON_SALE: "On sale",
  SCHEDULED: "Coming soon",
  CANCELLED: "Cancelled",
  ENDED: "Ended",
};

export function statusBadge(status) {
  const span = el("span", { class: `badge badge-${String(status || "").toLowerCase()}` }, STATUS_LABEL[status] || status);
  return span;
}

// el("div", {class: "x", onclick: fn}, child, "text", ...)
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function showIdFromPath() {
  const m = location.pathname.match(/\/(?:map|kiosk|queue)\/(\d+)\/?$/);
  return m ? Number(m[1]) : null;
}

export function plural(n, one, many = one + "s") {
  return `${n.toLocaleString()} ${n === 1 ? one : many}`;
}

// Screen-reader announcements through one polite and one assertive live region.
export function announcer(politeEl, assertiveEl) {
  const timers = new Map();
  const say = (node, msg) => {
    // clear then set, so repeating the same message is still read out
    node.textContent = "";
    clearTimeout(timers.get(node));
    timers.set(
      node,
      setTimeout(() => {
        node.textContent = msg;
      }, 30),
    );
  };
  return {
    polite: (msg) => say(politeEl, msg),
    assertive: (msg) => say(assertiveEl || politeEl, msg),
  };
}
