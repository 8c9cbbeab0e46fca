// The browser's seat store (static/js/live.js) under Node, for the verify_action tests:
// they apply frames with the code users run, not with a Python copy of it.
//
// Reads JSON lines on stdin and answers on stdout:
//   {"type": "layout", "seats": [...]}  a new store from GET /shows/{id}/seats' seats
//   any server frame                    applied as the page applies it (live.js liveShow)
//   {"type": "state"}                   prints {"seats": {label: [status, version]}, "show": {...}}
//
// Run as `node tests/js/live_store_runner.mjs`; Node 18.19+ (module.register).

import { register } from "node:module";
import { createInterface } from "node:readline";

// static/js has no package.json (the pages need no build step), so Node would read its
// files as CommonJS: load them as the ES modules the browser loads.
const asModule = `
export async function load(url, context, nextLoad) {
  if (url.startsWith("file:") && url.includes("/static/js/")) {
    return nextLoad(url, { ...context, format: "module" });
  }
  return nextLoad(url, context);
}`;
register(`data:text/javascript,${encodeURIComponent(asModule)}`);

const { SeatStore, STATUS_NAMES } = await import("../../static/js/live.js");

let store = null;
let show = {};

function apply(frame) {
  switch (frame.type) {
    case "layout":
      store = new SeatStore(frame.seats);
      show = {};
      break;
    case "snapshot":
      // live.js reloads the layout when a snapshot does not fit it: the test must say so
      if (store.applySnapshot(frame) === null) throw new Error("the snapshot does not fit the layout");
      break;
    case "seats":
      store.applyChanges(frame.changes);
      break;
    case "show": {
      // what map-page.js's onShow keeps of the frame
      show = { ...show, ...frame };
      delete show.type;
      break;
    }
    case "state": {
      const seats = {};
      for (let i = 0; i < store.count; i++) seats[store.labels[i]] = [STATUS_NAMES[store.status[i]], store.version[i]];
      process.stdout.write(JSON.stringify({ seats, show }) + "\n");
      break;
    }
    default:
      break; // presence, announcements, errors: no seat or show state
  }
}

for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
  if (line.trim()) apply(JSON.parse(line));
}
