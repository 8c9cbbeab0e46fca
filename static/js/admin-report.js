// /admin: the selected show's sales report (GET /admin/shows/{id}/report): seats by status,
// category and channel, revenue, live holds, and sell-through over time as an inline SVG
// built here (the page's CSP allows no inline script or style). "Download CSV" fetches the
// CSV with the admin token and hands it over as a Blob URL.
import { adminToken } from "./api.js";
import { el, money } from "./util.js";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const STATUS_WORDS = [
  ["AVAILABLE", "Available"],
  ["HELD", "Held"],
  ["BOOKED", "Sold"],
  ["BLOCKED", "Not for sale"],
  ["RESERVED", "Reserved"],
];

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  for (const c of children) node.append(c);
  return node;
}

const cap = (s) => (s ? s[0].toUpperCase() + s.slice(1) : s);
const time = (iso) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
const num = (n) => Number(n).toLocaleString();

function figure(label, value, key) {
  return el("div", { class: "report-figure", "data-key": key }, el("dt", {}, label), el("dd", {}, value));
}

function table(caption, head, rows, key) {
  return el(
    "div",
    { class: "table-scroll" },
    el(
      "table",
      { class: "report-table", "data-report": key },
      el("caption", {}, caption),
      el("thead", {}, el("tr", {}, ...head.map((h, k) => el("th", { scope: "col", class: k ? "num" : "" }, h)))),
      el("tbody", {}, ...rows.map((r) => el("tr", {}, ...r.map((c, k) => (k ? el("td", { class: "num" }, c) : el("th", { scope: "row" }, c)))))),
    ),
  );
}

// Seats sold so far against time: a step line from the first sale to now.
function chart(report) {
  const pts = report.sell_through;
  if (!pts.length) return el("p", { class: "muted", id: "report-chart-empty" }, "No seats sold yet: the sell-through chart starts with the first sale.");
  const W = 560, H = 180, L = 44, R = 12, T = 12, B = 28;
  const t0 = Date.parse(pts[0].minute);
  const t1 = Math.max(Date.parse(report.at), Date.parse(pts[pts.length - 1].minute) + 60_000, t0 + 60_000);
  const sold = pts[pts.length - 1].total;
  // the axis ends a little above the sales so far (a few sales are not a flat line on the floor)
  const step = 10 ** Math.max(0, Math.floor(Math.log10(Math.max(1, sold * 1.25))));
  const top = Math.min(Math.max(1, report.seats_total), Math.max(step, Math.ceil((sold * 1.25) / step) * step, 4));
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - v / top) * (H - T - B);
  let d = `M${x(t0).toFixed(1)},${y(0).toFixed(1)}`;
  for (const p of pts) {
    const at = Date.parse(p.minute) + 60_000; // a minute's sales are counted by its end
    d += ` H${x(at).toFixed(1)} V${y(p.total).toFixed(1)}`;
  }
  d += ` H${x(t1).toFixed(1)}`;
  const pct = Math.round((sold / top) * 100);
  const summary = `Sell-through: ${num(sold)} of ${num(report.seats_total)} seats sold (${pct}%) between ${time(pts[0].minute)} and ${time(report.at)}.`;
  const grid = [0, 0.5, 1].map((f) =>
    svg("g", {}, svg("line", { x1: L, x2: W - R, y1: y(top * f), y2: y(top * f), class: "chart-grid" }), svg("text", { x: L - 6, y: y(top * f) + 4, "text-anchor": "end", class: "chart-label" }, num(Math.round(top * f)))),
  );
  return svg(
    "svg",
    { viewBox: `0 0 ${W} ${H}`, class: "report-chart", id: "report-chart", role: "img", "aria-label": summary, "data-sold": sold },
    svg("title", {}, summary),
    ...grid,
    svg("path", { d: `${d} V${y(0).toFixed(1)} H${x(t0).toFixed(1)} Z`, class: "chart-area" }),
    svg("path", { d, class: "chart-line" }),
    svg("text", { x: L, y: H - 8, class: "chart-label" }, time(pts[0].minute)),
    svg("text", { x: W - R, y: H - 8, "text-anchor": "end", class: "chart-label" }, time(report.at)),
  );
}

export function salesReport({ call, errorText }) {
  let showId = null;
  let loading = null;
  let timer = 0;

  async function load() {
    if (showId === null) return;
    const id = showId;
    $("report-state").textContent = "Loading the report…";
    try {
      const report = await call("GET", `/admin/shows/${id}/report`);
      if (id !== showId) return;
      render(report);
      $("report-state").textContent = `As of ${time(report.at)}.`;
    } catch (err) {
      $("report-state").textContent = `Could not load the report: ${errorText(err)}`;
    }
  }

  function render(r) {
    const s = r.by_status;
    $("report-figures").replaceChildren(
      figure("Seats", num(r.seats_total), "total"),
      ...STATUS_WORDS.map(([k, w]) => figure(w, num(s[k] || 0), k)),
      figure("Bookings", num(r.bookings), "bookings"),
      figure("Revenue", money(r.revenue_cents), "revenue"),
      figure("Holds now", `${num(r.holds_live)} (${num(r.seats_held_live)} seats)`, "holds"),
    );
    $("report-tables").replaceChildren(
      table(
        "By category",
        ["Category", "Seats", "Available", "Held", "Sold", "Not for sale", "Reserved", "Revenue"],
        r.by_category.map((c) => [cap(c.category), num(c.seats), num(c.available), num(c.held), num(c.booked), num(c.blocked), num(c.reserved), money(c.revenue_cents)]),
        "category",
      ),
      r.by_channel.length
        ? table("By channel", ["Channel", "Seats", "Reserved", "Held", "Sold"], r.by_channel.map((c) => [c.channel, num(c.seats), num(c.reserved), num(c.held), num(c.booked)]), "channel")
        : el("p", { class: "muted" }, "No seats are kept for a sales channel."),
    );
    $("report-chart-box").replaceChildren(chart(r));
  }

  async function downloadCsv(e) {
    e.preventDefault();
    if (showId === null) return;
    const link = $("report-csv");
    link.setAttribute("aria-busy", "true");
    try {
      const res = await fetch(`/admin/shows/${showId}/report`, { headers: { Accept: "text/csv", Authorization: `Bearer ${adminToken.get()}` }, cache: "no-store" });
      if (!res.ok) throw new Error(res.status === 401 || res.status === 403 ? "sign in with an admin token first" : `HTTP ${res.status}`);
      const url = URL.createObjectURL(await res.blob());
      const a = el("a", { href: url, download: `show-${showId}-report.csv`, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      $("report-state").textContent = "Report downloaded as CSV.";
    } catch (err) {
      $("report-state").textContent = `Could not download the CSV: ${err.message || err}`;
    } finally {
      link.removeAttribute("aria-busy");
    }
  }

  $("report-csv").addEventListener("click", downloadCsv);
  $("report-refresh").addEventListener("click", () => load());

  return {
    open(id) {
      showId = id;
      $("report-figures").replaceChildren();
      $("report-tables").replaceChildren();
      $("report-chart-box").replaceChildren();
      loading = load();
      return loading;
    },
    // seats changed: the figures follow, a moment later; at most one request per `delay`
    // however busy the on-sale
    refresh(delay = 300) {
      if (timer) return;
      timer = setTimeout(() => ((timer = 0), load()), delay);
    },
  };
}
