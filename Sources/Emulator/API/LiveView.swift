import Events
import Foundation

/// The live view served at `GET /` and `GET /live`: one self-contained HTML page (no external
/// assets, no build step, so it works offline and on an isolated test machine).
///
/// - A site map: an SVG floor plan drawn from the site's positions, each IQ with its BLE reach circle
///   (shaded when offline, draggable to move it), each lock as a glyph by kind coloured by state with
///   its LED and battery, each controlled door open or closed with its controller's power, and every
///   lock out of all IQs' reach plainly marked, and each lock whose access list is behind the directory's
///   newest (held vN, newest vM: it gets it at its IQ's next sync) marked in orange with both versions.
///   The table of locks stays as a second view.
/// - Controls for taps (phone key as a user, tag, PIN), IQs (online, position, sync), controllers
///   (power, door sensor, exit button), the platform's lockdown (every lock or the chosen one, through
///   `POST /v1/lockdown`) and the simulated clock. A lock in lockdown is drawn red with "LOCKDOWN"; one
///   the platform wants in (or out of) lockdown that no IQ has told yet says "LOCKDOWN…" ("LIFT…").
/// - An event feed (time, device, user, method, result, reason, stage) with filters; a click on an
///   event highlights its device on the map.
/// - With `--api-token`, a login form: `POST /v1/login` sets an HttpOnly, SameSite=Strict cookie, so
///   the token never sits in a URL or in page script.
///
/// The page is a client of the documented control API only (no private routes), and renders all
/// server data with `textContent` / SVG attributes, never as HTML, so a hostile name cannot inject script.
public enum LiveView {
    /// The stream names each SSE message after its CloudEvent type; EventSource delivers named
    /// messages only to listeners registered for that exact name, so the page needs the full list.
    static var eventTypesJSON: String {
        let names = EventType.allCases.map { "\"\($0.rawValue)\"" }
        return "[" + names.joined(separator: ",") + "]"
    }

    public static let html: String = page.replacingOccurrences(of: "__EVENT_TYPES__", with: eventTypesJSON)

    static let page = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Keyway live view</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1em 1.5em; color: #222; }
  header { display: flex; gap: 1.5em; align-items: baseline; flex-wrap: wrap; }
  h1 { font-size: 1.4em; margin: 0 0 .3em; }
  h2 { font-size: 1.1em; margin: 1em 0 .4em; }
  h3 { font-size: 1em; margin: .8em 0 .3em; }
  button { cursor: pointer; }
  input[type=number] { width: 5em; }
  #main { display: grid; grid-template-columns: minmax(0, 3fr) minmax(18em, 1fr); gap: 1em; align-items: start; }
  #map { width: 100%; height: auto; max-height: 74vh; border: 1px solid #ccc; background: #fcfcfa; touch-action: none; user-select: none; }
  #panel select { max-width: 15em; }
  #panel section { min-width: 0; overflow-wrap: anywhere; border: 1px solid #ddd; border-radius: 4px; padding: .4em .6em; margin-bottom: .6em; }
  #panel .row { display: flex; gap: .4em; align-items: center; flex-wrap: wrap; margin: .2em 0; }
  .grid-minor { stroke: #eee; stroke-width: 1; }
  .grid-major { stroke: #d6d6d6; stroke-width: 1.5; }
  .axis { fill: #999; font-size: 10px; }
  .reach-circle { fill: rgba(37, 99, 235, .10); stroke: #2563eb; stroke-width: 2; }
  .reach-circle[data-online="false"] { fill: rgba(120, 120, 120, .25); stroke: #777; stroke-dasharray: 8 6; }
  .iq-handle { fill: #1e3a8a; stroke: #fff; stroke-width: 2; cursor: grab; }
  .iq[data-online="false"] .iq-handle { fill: #888; }
  .iq.dragging .iq-handle { cursor: grabbing; fill: #f59e0b; }
  .iq-label { fill: #1e3a8a; font-size: 13px; font-weight: 600; }
  .iq-detail { font-size: 11px; font-weight: normal; }
  .iq[data-online="false"] .iq-label { fill: #666; }
  .lock { cursor: pointer; }
  .lock .glyph { stroke: #222; stroke-width: 1.5; }
  .lock[data-state="locked"] .glyph { fill: #6b7280; }
  .lock[data-state="unlocked"] .glyph { fill: #16a34a; }
  .lock[data-state="office_mode"] .glyph { fill: #2563eb; }
  .lock[data-state="uncertain"] .glyph { fill: #f59e0b; }
  .lock[data-state="lockdown"] .glyph { fill: #b91c1c; }
  .lock .lock-label { font-size: 10.5px; fill: #222; }
  .lock .battery { font-size: 10px; fill: #555; }
  .lock .battery[data-low="true"] { fill: #c00; font-weight: bold; }
  .map-led { stroke: #555; stroke-width: 1; fill: #ddd; }
  .map-led[data-led="green"] { fill: #16c13a; }
  .map-led[data-led="red"] { fill: #e02424; }
  .reach-mark { fill: none; stroke-width: 2.5; stroke-dasharray: 5 4; }
  .lock[data-reach="out"] .reach-mark { stroke: #d00; }
  .lock[data-reach="offline"] .reach-mark { stroke: #b35c00; }
  .lock[data-reach="in"] .reach-mark, .lock[data-reach="in"] .reach-text { display: none; }
  .reach-text { font-size: 11px; font-weight: bold; fill: #d00; }
  .lock[data-lockdown="true"] .glyph { fill: #b91c1c; }
  .lockdown-text { font-size: 10.5px; font-weight: bold; fill: #b91c1c; }
  .lock[data-lockdown="pending_on"] .lockdown-text, .lock[data-lockdown="pending_off"] .lockdown-text { fill: #9a3412; font-style: italic; }
  #lockdown-status[data-active="true"] { color: #b91c1c; }
  td.state[data-lockdown="true"] { color: #b91c1c; font-weight: bold; }
  .list-text { font-size: 10px; font-weight: bold; fill: #c2410c; }
  .list-badge { fill: #f97316; stroke: #7c2d12; stroke-width: 1; }
  .lock[data-list="current"] .list-badge, .lock[data-list="current"] .list-text { display: none; }
  td.list[data-pending="true"] { color: #c2410c; font-weight: bold; }
  .lock[data-reach="offline"] .reach-text { fill: #b35c00; }
  .lock.highlight .glyph, .iq.highlight .iq-handle { stroke: #f0f; stroke-width: 4; }
  .lock.selected .glyph { stroke: #000; stroke-width: 3; }
  .door-leaf { stroke: #7c4a1e; stroke-width: 4; stroke-linecap: round; }
  .door[data-open="true"] .door-leaf { stroke: #d97706; }
  .door-text { font-size: 10px; fill: #7c4a1e; }
  .door[data-powered="false"] .power-text { fill: #c00; font-weight: bold; }
  .door .alarm-text { font-size: 9px; fill: #c00; font-weight: bold; }
  .legend text { font-size: 10px; fill: #333; }
  table { border-collapse: collapse; width: 100%; }
  th, td { border-bottom: 1px solid #ddd; padding: .25em .5em; text-align: left; vertical-align: middle; }
  th { background: #f4f4f4; }
  .state[data-state="locked"] { color: #555; }
  .state[data-state="unlocked"] { color: #0a7d22; font-weight: bold; }
  .state[data-state="office_mode"] { color: #0a5fa8; font-weight: bold; }
  .state[data-state="uncertain"] { color: #b35c00; font-weight: bold; }
  .state[data-state="lockdown"] { color: #b91c1c; font-weight: bold; }
  .led { display: inline-block; width: .9em; height: .9em; border-radius: 50%; border: 1px solid #888; vertical-align: middle; margin-right: .3em; background: #ddd; }
  .led[data-led="green"] { background: #16c13a; box-shadow: 0 0 6px #16c13a; }
  .led[data-led="red"] { background: #e02424; box-shadow: 0 0 6px #e02424; }
  td.reach[data-reach="out"] { color: #c00; font-weight: bold; }
  td.reach[data-reach="offline"] { color: #b35c00; font-weight: bold; }
  .alarm { color: #c00; font-weight: bold; }
  .result[data-result="granted"] { color: #0a7d22; font-weight: bold; }
  .result[data-result="denied"], .result[data-result="error"], .result[data-result="phone_refused"] { color: #c00; font-weight: bold; }
  #status[data-status="live"] { color: #0a7d22; }
  #status[data-status="reconnecting"] { color: #b35c00; }
  #feed-wrap { max-height: 22em; overflow: auto; border: 1px solid #eee; }
  #feed { font-size: 12px; }
  #feed tr.event { cursor: pointer; }
  #feed tr.event:hover { background: #f5f5ff; }
  #feed tr.event.selected { background: #fde7fd; }
  .stage { font-family: ui-monospace, monospace; }
  .stage[data-stage="held"] { color: #b35c00; }
  .stage[data-stage="lost"] { color: #c00; font-weight: bold; }
  .stage[data-stage="delivered"] { color: #0a7d22; }
  #login { max-width: 26em; border: 1px solid #ccc; border-radius: 4px; padding: 1em; }
  #login label { display: block; margin-bottom: .5em; }
</style>
</head>
<body data-events="0" data-refreshes="0" data-taps="0">
<header>
  <h1 id="site">Keyway</h1>
  <span>Clock: <b id="clock">…</b></span>
  <span>Stream: <b id="status" data-status="connecting">connecting</b></span>
  <span>Last tap: <b id="last-result" class="result">—</b></span>
  <span>Access list: <b id="list-status" data-behind="0">…</b></span>
  <span>Lockdown: <b id="lockdown-status" data-active="false" data-count="0" data-pending="0">…</b></span>
</header>
<p id="error" class="alarm" role="alert" hidden></p>

<form id="login" method="post" action="/v1/login" hidden>
  <h2>Log in</h2>
  <p>This emulator needs its API token. It is sent once, in the body of <code>POST /v1/login</code>, and
     the page keeps an HttpOnly session cookie instead.</p>
  <label>API token <input id="token" type="password" autocomplete="current-password" required></label>
  <button id="login-submit" type="submit">Log in</button>
  <p id="login-error" class="alarm" hidden></p>
</form>

<div id="app" hidden>
<div id="main">
  <div>
    <svg id="map" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="Site map: locks, doors and IQ reach">
      <g id="layer-grid"></g><g id="layer-reach"></g><g id="layer-doors"></g><g id="layer-locks"></g><g id="layer-iqs"></g><g id="layer-legend" class="legend"></g>
    </svg>
    <div id="map-help">Drag an IQ's square to move it. Click a lock to choose it for a tap.</div>
  </div>
  <div id="panel">
    <section id="tap-panel">
      <h3>Tap</h3>
      <div class="row"><label>Lock <select id="tap-lock"></select></label></div>
      <div class="row"><label>As <select id="tap-kind">
        <option value="user">phone key of user</option><option value="tag">tag (UID)</option><option value="pin">PIN</option>
      </select></label></div>
      <div class="row" id="row-user"><label>User <select id="user"></select></label></div>
      <div class="row" id="row-tag" hidden><label>Tag UID <input id="tap-tag" placeholder="04:A2:3B:1C:5D:80" size="22"></label></div>
      <div class="row" id="row-pin" hidden><label>PIN <input id="tap-pin" inputmode="numeric" size="8"></label></div>
      <div class="row"><button id="tap-button" type="button">Tap</button> <span id="tap-result" class="result"></span></div>
    </section>
    <section id="clock-panel">
      <h3>Clock <span id="clock-mode"></span></h3>
      <div class="row"><label>Advance <input id="advance-seconds" type="number" min="0" step="1" value="8"> s</label>
        <button id="clock-advance" type="button">Advance</button></div>
      <div class="row"><label>Set <input id="clock-set-time" size="22" placeholder="2026-11-23T17:00:00Z"></label>
        <button id="clock-set" type="button">Set</button></div>
    </section>
    <section id="lockdown-panel">
      <h3>Lockdown</h3>
      <div class="row"><button id="lockdown-all" type="button">Lock down every lock</button>
        <button id="lockdown-lift-all" type="button">Lift everywhere</button></div>
      <div class="row"><button id="lockdown-lock" type="button">Lock down the chosen lock</button>
        <button id="lockdown-lift-lock" type="button">Lift it</button></div>
      <div id="lockdown-result"></div>
    </section>
    <section id="iq-panel"><h3>IQs</h3><div id="iq-list"></div></section>
    <section id="controller-panel"><h3>Door controllers</h3><div id="controller-list"></div></section>
  </div>
</div>

<h2>Events</h2>
<div class="row">
  <label>Device <select id="feed-lock"><option value="">all</option></select></label>
  <label>Type <select id="feed-type"><option value="">all</option></select></label>
  <span id="feed-count"></span>
</div>
<div id="feed-wrap">
<table id="feed">
  <thead><tr><th>Time</th><th>Event</th><th>Device</th><th>User</th><th>Method</th><th>Result</th><th>Reason</th><th>Stage</th></tr></thead>
  <tbody></tbody>
</table>
</div>

<h2>Locks</h2>
<table id="doors">
  <thead><tr><th>Lock</th><th>State</th><th>LED / beep</th><th>Door</th><th>Office mode</th><th>IQ reach</th><th>Access list</th><th>Battery</th><th></th><th>Result</th></tr></thead>
  <tbody></tbody>
</table>
</div>
<script>
"use strict";
const EVENT_TYPES = __EVENT_TYPES__;
const SVGNS = "http://www.w3.org/2000/svg";
const S = 20;            // SVG units per metre
const FEED_MAX = 200;    // events kept in the feed
const PAGE = 1000;       // events per GET /v1/events
const FINAL_STAGES = new Set(["delivered", "lost"]);
const $ = (id) => document.getElementById(id);
const rows = new Map();          // lock id → table row
const mapLocks = new Map();      // lock id → SVG parts
const mapIQs = new Map();        // IQ id → SVG parts
const mapDoors = new Map();      // controller id → SVG parts
const iqPanels = new Map(), ctlPanels = new Map();
let site = null, iqState = new Map(), ctlState = new Map(), lockState = new Map();
let dragging = null, highlighted = null, selectedEvent = null;
const feed = new Map();          // journal position → event
let feedFloor = null;            // re-read events after this position (stages change)

class Unauthorized extends Error {}

function showError(msg) { const e = $("error"); e.textContent = msg; e.hidden = !msg; }

async function api(method, path, body) {
  const init = { method, headers: { "Accept": "application/json" }, credentials: "same-origin" };
  if (body !== undefined) { init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
  const r = await fetch(path, init);
  let data = null;
  try { data = await r.json(); } catch (_) { /* not JSON */ }
  if (r.status === 401) throw new Unauthorized("HTTP 401: log in");
  if (!r.ok) {
    const e = data && data.error ? data.error : {};
    const err = new Error(method + " " + path + ": HTTP " + r.status + " " + (e.message || "") + (e.field ? " (" + e.field + ")" : ""));
    err.code = e.code;
    throw err;
  }
  return data;
}

function el(tag, attrs, parent, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}
function h(tag, props, parent, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) { if (k === "dataset") Object.assign(e.dataset, v); else e[k] = v; }
  if (text !== undefined) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}
const sx = (x) => x * S, sy = (y) => -y * S;   // site y grows "into the block": up on the map

async function run(what, fn) {
  try { const r = await fn(); showError(""); return r; }
  catch (e) { if (e instanceof Unauthorized) showLogin(); else showError(what + ": " + String(e.message || e)); }
  finally { refresh(); }
}

// ---- the map ----------------------------------------------------------------------------------

function buildMap(locks, iqs) {
  const svg = $("map");
  const xs = [], ys = [];
  for (const l of locks) { xs.push(l.position.x); ys.push(l.position.y); }
  for (const q of iqs) { xs.push(q.position.x - q.range_m, q.position.x + q.range_m); ys.push(q.position.y - q.range_m, q.position.y + q.range_m); }
  const minX = Math.floor(Math.min(...xs) - 2), maxX = Math.ceil(Math.max(...xs) + 4);  // room for labels
  const minY = Math.floor(Math.min(...ys) - 2), maxY = Math.ceil(Math.max(...ys) + 3);
  svg.setAttribute("viewBox", [sx(minX), sy(maxY), (maxX - minX) * S, (maxY - minY) * S].join(" "));
  svg.dataset.bounds = [minX, minY, maxX, maxY].join(",");
  const grid = $("layer-grid");
  for (let x = minX; x <= maxX; x++) {
    el("line", { x1: sx(x), y1: sy(minY), x2: sx(x), y2: sy(maxY), class: x % 5 === 0 ? "grid-major" : "grid-minor" }, grid);
    if (x % 5 === 0) el("text", { x: sx(x) + 2, y: sy(minY) - 3, class: "axis" }, grid, x + " m");
  }
  for (let y = minY; y <= maxY; y++) {
    el("line", { x1: sx(minX), y1: sy(y), x2: sx(maxX), y2: sy(y), class: y % 5 === 0 ? "grid-major" : "grid-minor" }, grid);
    if (y % 5 === 0) el("text", { x: sx(minX) + 2, y: sy(y) - 2, class: "axis" }, grid, "y " + y);
  }
  const legend = $("layer-legend");
  const lx = sx(minX) + 8, ly = sy(maxY) + 14;
  const states = [["locked", "#6b7280"], ["unlocked", "#16a34a"], ["office mode", "#2563eb"], ["uncertain", "#f59e0b"], ["lockdown", "#b91c1c"]];
  states.forEach(([name, colour], i) => {
    el("rect", { x: lx + i * 90, y: ly - 9, width: 10, height: 10, fill: colour, stroke: "#222" }, legend);
    el("text", { x: lx + i * 90 + 14, y: ly }, legend, name);
  });
  el("text", { x: lx + 5 * 90, y: ly }, legend, "dashed red ring: out of every IQ's reach");
  el("circle", { class: "list-badge", cx: lx + 5 * 90 + 205, cy: ly - 4, r: 4 }, legend);
  el("text", { x: lx + 5 * 90 + 212, y: ly }, legend, "orange: access list behind, waits for its IQ's sync");
  for (const q of iqs) buildIQ(q);
  for (const l of locks) buildLock(l);
}

function buildIQ(q) {
  const g = el("g", { class: "iq", id: "map-iq-" + q.id, "data-iq": q.id }, $("layer-iqs"));
  const reach = el("circle", { class: "reach-circle" }, $("layer-reach"));
  reach.dataset.iq = q.id; reach.id = "reach-" + q.id;
  const handle = el("rect", { class: "iq-handle", width: 16, height: 16 }, g);
  handle.dataset.iq = q.id;
  const label = el("text", { class: "iq-label", "text-anchor": "middle" }, g);
  const detail = el("text", { class: "iq-label iq-detail", "text-anchor": "middle" }, g);
  const parts = { g, reach, handle, label, detail };
  mapIQs.set(q.id, parts);
  handle.addEventListener("pointerdown", (ev) => startDrag(ev, q.id));
  handle.addEventListener("click", () => highlight("iq", q.id));
}

function placeIQ(q) {
  const p = mapIQs.get(q.id);
  if (!p) return;
  const x = sx(q.position.x), y = sy(q.position.y);
  p.reach.setAttribute("cx", x); p.reach.setAttribute("cy", y); p.reach.setAttribute("r", q.range_m * S);
  p.handle.setAttribute("x", x - 8); p.handle.setAttribute("y", y - 8);
  p.label.setAttribute("x", x); p.label.setAttribute("y", y - 14);
  p.detail.setAttribute("x", x); p.detail.setAttribute("y", y + 24);
}

function renderIQ(q) {
  const p = mapIQs.get(q.id);
  if (!p) return;
  p.g.dataset.online = String(q.online);
  p.reach.dataset.online = String(q.online);   // the circle lives in its own layer, under the locks
  p.label.textContent = q.name + " (" + q.id + ")";
  p.detail.textContent = "z " + q.position.z + " m · " + (q.online ? "online" : "OFFLINE") + " · " + q.locks_in_reach.length + " locks";
  if (!dragging || dragging.id !== q.id) placeIQ(q);
}

function buildLock(l) {
  const g = el("g", { class: "lock", id: "map-lock-" + l.id, "data-lock": l.id, "data-kind": l.kind }, $("layer-locks"));
  el("title", {}, g, l.name + " (" + l.id + ")");
  const mark = el("circle", { class: "reach-mark", r: 22 }, g);
  let glyph;
  switch (l.kind) {
    case "wall_reader": glyph = el("rect", { x: -8, y: -12, width: 16, height: 24, rx: 2 }, g); break;
    case "escutcheon": glyph = el("rect", { x: -6, y: -14, width: 12, height: 28, rx: 6 }, g); break;
    case "locker": glyph = el("rect", { x: -10, y: -10, width: 20, height: 20 }, g); el("line", { x1: -10, y1: 0, x2: 10, y2: 0, stroke: "#222" }, g); break;
    default: glyph = el("circle", { r: 11 }, g);   // cylinder
  }
  glyph.setAttribute("class", "glyph");
  const led = el("circle", { class: "map-led", cx: 12, cy: -12, r: 4.5 }, g);
  const label = el("text", { class: "lock-label", x: 0, y: 27, "text-anchor": "middle" }, g, l.id);
  const battery = el("text", { class: "battery", x: 0, y: 38, "text-anchor": "middle" }, g);
  const reachText = el("text", { class: "reach-text", x: 0, y: 50, "text-anchor": "middle" }, g);
  const listBadge = el("circle", { class: "list-badge", cx: -12, cy: -12, r: 4.5 }, g);
  const listText = el("text", { class: "list-text", x: 0, y: 61, "text-anchor": "middle" }, g);
  const lockdownText = el("text", { class: "lockdown-text", x: 0, y: -20, "text-anchor": "middle" }, g);
  const parts = { g, glyph, led, label, battery, mark, reachText, listBadge, listText, lockdownText };
  mapLocks.set(l.id, parts);
  g.addEventListener("click", () => { $("tap-lock").value = l.id; selectLock(l.id); highlight("lock", l.id); });
}

function reachOf(l) {
  if (!l.in_iq_reach) return "out";
  return l.iq_reach.some((id) => iqState.get(id) && iqState.get(id).online) ? "in" : "offline";
}

function renderLock(l) {
  let p = mapLocks.get(l.id);
  if (!p) { buildLock(l); p = mapLocks.get(l.id); }
  p.g.setAttribute("transform", "translate(" + sx(l.position.x) + " " + sy(l.position.y) + ")");
  p.g.dataset.state = l.state;
  const fb = l.feedback || {};
  p.led.dataset.led = fb.led || "off";
  p.g.dataset.led = fb.led || "off";
  p.battery.textContent = l.battery_level !== undefined ? "battery " + l.battery_level + "%" + (l.battery_low ? " LOW" : "") : "mains";
  p.battery.dataset.low = String(!!l.battery_low);
  const reach = reachOf(l);
  p.g.dataset.reach = reach;
  p.reachText.textContent = reach === "out" ? "OUT OF REACH" : reach === "offline" ? "IQ OFFLINE" : "";
  // The directory's changes reach a lock only through an IQ sync: show what it holds when that is behind.
  const behind = l.access_list_version < l.access_list_newest;
  p.g.dataset.list = behind ? "pending" : "current";
  p.g.dataset.listHeld = String(l.access_list_version);
  p.g.dataset.listNewest = String(l.access_list_newest);
  p.listText.textContent = behind ? "list v" + l.access_list_version + "→v" + l.access_list_newest : "";
  const ld = lockdownOf(l);
  p.g.dataset.lockdown = ld;
  p.lockdownText.textContent = { "true": "LOCKDOWN", pending_on: "LOCKDOWN…", pending_off: "LIFT…", "false": "" }[ld];
}

// The lock's lockdown as it holds it, or the platform's wish that no online IQ has delivered yet.
function lockdownOf(l) {
  if (l.locked_down === undefined) return "false";
  if (l.lockdown_wanted !== undefined && l.lockdown_wanted !== l.locked_down) return l.lockdown_wanted ? "pending_on" : "pending_off";
  return String(!!l.locked_down);
}

function buildDoor(c) {
  const g = el("g", { class: "door", id: "map-door-" + c.id, "data-controller": c.id, "data-lock": c.lock }, $("layer-doors"));
  const leaf = el("line", { class: "door-leaf", x1: 0, y1: 0, x2: 30, y2: 0 }, g);
  const text = el("text", { class: "door-text", x: 36, y: -6 }, g);
  const power = el("text", { class: "door-text power-text", x: 36, y: 5 }, g);
  const alarm = el("text", { class: "alarm-text", x: 36, y: 16 }, g);
  mapDoors.set(c.id, { g, leaf, text, power, alarm });
}

function renderDoor(c) {
  if (!mapDoors.has(c.id)) buildDoor(c);
  const p = mapDoors.get(c.id), l = lockState.get(c.lock);
  if (!l) return;
  p.g.setAttribute("transform", "translate(" + (sx(l.position.x) - 15) + " " + (sy(l.position.y) - 24) + ")");
  const open = c.door_open === true;
  p.g.dataset.open = c.door_open === undefined ? "unknown" : String(open);
  p.g.dataset.powered = String(c.powered);
  p.leaf.setAttribute("x2", open ? 15 : 30); p.leaf.setAttribute("y2", open ? -26 : 0);
  p.text.textContent = "door " + (c.door_open === undefined ? "(no sensor)" : open ? "OPEN" : "closed");
  p.power.textContent = c.powered ? "power on" : "POWER OFF";
  p.alarm.textContent = c.alarm ? "ALARM " + c.alarm : "";
}

// ---- dragging an IQ (pointer events; POST /v1/iqs/{id}/position on release) -------------------

function toSite(ev) {
  const svg = $("map"), pt = svg.createSVGPoint();
  pt.x = ev.clientX; pt.y = ev.clientY;
  const p = pt.matrixTransform(svg.getScreenCTM().inverse());
  return { x: p.x / S, y: -p.y / S };
}

function startDrag(ev, id) {
  ev.preventDefault();
  const q = iqState.get(id);
  if (!q) return;
  const start = toSite(ev);
  dragging = { id, dx: q.position.x - start.x, dy: q.position.y - start.y, moved: false, at: { ...q.position } };
  mapIQs.get(id).g.classList.add("dragging");
  ev.target.setPointerCapture(ev.pointerId);
  ev.target.addEventListener("pointermove", onDrag);
  ev.target.addEventListener("pointerup", endDrag, { once: true });
  ev.target.addEventListener("pointercancel", endDrag, { once: true });
}

function onDrag(ev) {
  if (!dragging) return;
  const p = toSite(ev), q = iqState.get(dragging.id);
  dragging.at = { x: round1(p.x + dragging.dx), y: round1(p.y + dragging.dy), z: q.position.z };
  dragging.moved = dragging.moved || Math.hypot(dragging.at.x - q.position.x, dragging.at.y - q.position.y) > 0.05;
  placeIQ({ ...q, position: dragging.at });
}

async function endDrag(ev) {
  ev.target.removeEventListener("pointermove", onDrag);
  const d = dragging;
  if (!d) return;
  mapIQs.get(d.id).g.classList.remove("dragging");
  if (!d.moved) { dragging = null; return; }
  await run("move " + d.id, () => api("POST", "/v1/iqs/" + encodeURIComponent(d.id) + "/position", { x: d.at.x, y: d.at.y, z: d.at.z }));
  dragging = null;
  refresh();
}
const round1 = (v) => Math.round(v * 10) / 10;

// ---- highlight -------------------------------------------------------------------------------

function highlight(kind, id) {
  for (const p of mapLocks.values()) p.g.classList.remove("highlight");
  for (const p of mapIQs.values()) p.g.classList.remove("highlight");
  const p = kind === "iq" ? mapIQs.get(id) : mapLocks.get(id);
  if (p) p.g.classList.add("highlight");
  highlighted = p ? kind + ":" + id : null;
  $("map").dataset.highlighted = p ? id : "";
}

function selectLock(id) {
  for (const [lid, p] of mapLocks) p.g.classList.toggle("selected", lid === id);
}

// ---- panels ----------------------------------------------------------------------------------

function iqPanel(q) {
  let p = iqPanels.get(q.id);
  if (p) return p;
  const box = h("div", { className: "iq-item", id: "iq-item-" + q.id }, $("iq-list"));
  h("div", {}, box, q.name + " (" + q.id + ")");
  const r1 = h("div", { className: "row" }, box);
  const online = h("button", { type: "button", id: "iq-online-" + q.id }, r1);
  online.addEventListener("click", () => run("IQ " + q.id, () =>
    api("POST", "/v1/iqs/" + encodeURIComponent(q.id) + "/online", { online: !iqState.get(q.id).online })));
  const sync = h("button", { type: "button", id: "iq-sync-" + q.id }, r1, "Sync now");
  sync.addEventListener("click", () => run("sync " + q.id, () => api("POST", "/v1/iqs/" + encodeURIComponent(q.id) + "/sync")));
  const r2 = h("div", { className: "row" }, box);
  h("span", {}, r2, "x");
  const x = h("input", { type: "number", step: "0.1", id: "iq-x-" + q.id }, r2);
  h("span", {}, r2, "y");
  const y = h("input", { type: "number", step: "0.1", id: "iq-y-" + q.id }, r2);
  const move = h("button", { type: "button", id: "iq-move-" + q.id }, r2, "Move");
  // What the user typed is theirs until Move: the 2 s refresh must not put the IQ's position back into
  // a field between its edit and the click (focus has left the field by then).
  for (const f of [x, y]) f.addEventListener("input", () => { f.dataset.edited = "1"; });
  move.addEventListener("click", () => {
    const body = { x: Number(x.value), y: Number(y.value), z: iqState.get(q.id).position.z };
    delete x.dataset.edited; delete y.dataset.edited;
    run("move " + q.id, () => api("POST", "/v1/iqs/" + encodeURIComponent(q.id) + "/position", body));
  });
  const info = h("div", { className: "iq-info" }, box);
  p = { online, x, y, info };
  iqPanels.set(q.id, p);
  return p;
}

function renderIQPanel(q) {
  const p = iqPanel(q);
  p.online.textContent = q.online ? "Take offline" : "Bring online";
  p.online.dataset.online = String(q.online);
  if (document.activeElement !== p.x && !p.x.dataset.edited) p.x.value = q.position.x;
  if (document.activeElement !== p.y && !p.y.dataset.edited) p.y.value = q.position.y;
  p.info.textContent = (q.online ? "online" : "offline") + ", range " + q.range_m + " m, z " + q.position.z + " m; reaches " +
    (q.locks_in_reach.length ? q.locks_in_reach.join(", ") : "no lock") + (q.last_sync ? "; last sync " + q.last_sync : "");
}

function ctlPanel(c) {
  let p = ctlPanels.get(c.id);
  if (p) return p;
  const box = h("div", { className: "ctl-item", id: "ctl-item-" + c.id }, $("controller-list"));
  h("div", {}, box, c.name + " (" + c.id + ", " + c.relay.replace(/_/g, " ") + ", lock " + c.lock + ")");
  const r = h("div", { className: "row" }, box);
  const power = h("button", { type: "button", id: "ctl-power-" + c.id }, r);
  power.addEventListener("click", () => run("power " + c.id, () =>
    api("POST", "/v1/controllers/" + encodeURIComponent(c.id) + "/power", { on: !ctlState.get(c.id).powered })));
  const sensor = h("button", { type: "button", id: "door-sensor-" + c.id }, r);
  sensor.addEventListener("click", () => run("door " + c.id, () =>
    api("POST", "/v1/doors/" + encodeURIComponent(c.id) + "/sensor", { open: !(ctlState.get(c.id).door_open === true) })));
  const exit = h("button", { type: "button", id: "door-exit-" + c.id }, r, "Exit button");
  exit.addEventListener("click", () => run("exit " + c.id, async () => {
    const res = await api("POST", "/v1/doors/" + encodeURIComponent(c.id) + "/exit");
    showTapResult(c.lock, res.result + (res.reason ? " — " + res.reason : ""), res.result);
  }));
  const info = h("div", { className: "ctl-info" }, box);
  p = { power, sensor, exit, info };
  ctlPanels.set(c.id, p);
  return p;
}

function renderCtlPanel(c) {
  const p = ctlPanel(c);
  p.power.textContent = c.powered ? "Cut power" : "Restore power";
  p.power.dataset.powered = String(c.powered);
  p.sensor.textContent = c.door_open ? "Close door" : "Open door";
  p.sensor.disabled = c.door_open === undefined;
  p.info.textContent = "power " + (c.powered ? "on" : "OFF") + ", door " + (c.door_open === undefined ? "no sensor" : c.door_open ? "open" : "closed") +
    ", relay " + (c.relay_energised ? "energised" : "released") + (c.door_free ? ", door free" : "") + (c.alarm ? ", ALARM " + c.alarm : "");
}

// ---- the table -------------------------------------------------------------------------------

function cell(tr, cls) { const td = document.createElement("td"); if (cls) td.className = cls; tr.appendChild(td); return td; }

function rowFor(lock) {
  let row = rows.get(lock.id);
  if (row) return row;
  const tr = document.createElement("tr");
  tr.id = "lock-" + lock.id;
  tr.dataset.lock = lock.id;
  row = { tr };
  row.name = cell(tr, "name");
  row.state = cell(tr, "state");
  const ledCell = cell(tr, "feedback");
  row.led = document.createElement("span"); row.led.className = "led";
  row.ledText = document.createElement("span"); row.ledText.className = "led-text";
  ledCell.append(row.led, row.ledText);
  row.door = cell(tr, "door");
  row.office = cell(tr, "office");
  row.reach = cell(tr, "reach");
  row.list = cell(tr, "list");
  row.battery = cell(tr, "battery");
  const btn = document.createElement("button");
  btn.className = "tap"; btn.textContent = "Tap"; btn.dataset.lock = lock.id; btn.type = "button";
  btn.addEventListener("click", () => tap(lock.id));
  cell(tr, "action").appendChild(btn);
  row.result = cell(tr, "result");
  row.result.id = "result-" + lock.id;
  document.querySelector("#doors tbody").appendChild(tr);
  rows.set(lock.id, row);
  return row;
}

function renderRow(l, c) {
  const row = rowFor(l);
  row.name.textContent = l.name + " (" + l.id + ")";
  const ld = lockdownOf(l);
  row.state.textContent = l.state + (ld === "true" ? " · LOCKDOWN" : ld === "pending_on" ? " · lockdown pending" : ld === "pending_off" ? " · lift pending" : "");
  row.state.dataset.state = l.state;
  row.state.dataset.lockdown = ld;
  const fb = l.feedback || {};
  row.led.dataset.led = fb.led || "off";
  row.ledText.textContent = (fb.led || "off") + (fb.beep && fb.beep !== "none" ? " · " + fb.beep : "");
  if (c) {
    const parts = [c.door_open === undefined ? "no sensor" : (c.door_open ? "open" : "closed")];
    if (!c.powered) parts.push("controller unpowered");
    row.door.textContent = parts.join(", ");
    row.door.dataset.alarm = c.alarm || "";
    if (c.alarm) h("span", { className: "alarm" }, row.door, " ALARM " + c.alarm);
  } else {
    row.door.textContent = "—";
    row.door.dataset.alarm = "";
  }
  row.office.textContent = l.office_mode ? "on" : "off";
  const reach = reachOf(l);
  row.reach.dataset.reach = reach;
  row.reach.textContent = reach === "out" ? "out of reach (no IQ)" : l.iq_reach.join(", ") + (reach === "offline" ? " (offline)" : "");
  const behind = l.access_list_version < l.access_list_newest;
  row.list.dataset.pending = String(behind);
  row.list.textContent = "v" + l.access_list_version + (behind ? " — newest v" + l.access_list_newest + ", pending IQ sync" : "");
  row.battery.textContent = (l.battery_level !== undefined ? l.battery_level + "%" : "—") + (l.battery_low ? " LOW" : "");
}

// ---- refresh ---------------------------------------------------------------------------------

let refreshing = false, again = false;
async function refresh() {
  if (!site) return;
  if (refreshing) { again = true; return; }
  refreshing = true;
  try {
    do {
      again = false;
      const [locks, controllers, iqs, clock] = await Promise.all(
        [api("GET", "/v1/locks"), api("GET", "/v1/controllers"), api("GET", "/v1/iqs"), api("GET", "/v1/clock")]);
      iqState = new Map(iqs.map((q) => [q.id, q]));
      ctlState = new Map(controllers.map((c) => [c.id, c]));
      lockState = new Map(locks.map((l) => [l.id, l]));
      const byLock = new Map(controllers.map((c) => [c.lock, c]));
      for (const q of iqs) { renderIQ(q); renderIQPanel(q); }
      for (const l of locks) { renderLock(l); renderRow(l, byLock.get(l.id)); }
      const behind = locks.filter((l) => l.access_list_version < l.access_list_newest);
      $("list-status").dataset.behind = String(behind.length);
      const held = locks.filter((l) => l.locked_down), waiting = locks.filter((l) => lockdownOf(l).startsWith("pending"));
      const ls = $("lockdown-status");
      ls.dataset.active = String(held.length > 0);
      ls.dataset.count = String(held.length);
      ls.dataset.pending = String(waiting.length);
      ls.textContent = (held.length ? held.length + " lock" + (held.length === 1 ? "" : "s") + " locked down" : "none") +
        (waiting.length ? ", " + waiting.length + " waiting for an IQ" : "");
      $("list-status").textContent = locks.length ? "newest v" + Math.max(...locks.map((l) => l.access_list_newest)) +
        (behind.length ? ", " + behind.length + " lock" + (behind.length === 1 ? "" : "s") + " behind" : ", every lock has it") : "—";
      for (const c of controllers) { renderDoor(c); renderCtlPanel(c); }
      $("clock").textContent = clock.now + " (" + clock.mode + ")";
      $("clock").dataset.now = clock.now;
      $("clock-mode").textContent = "(" + clock.mode + ")";
      for (const id of ["advance-seconds", "clock-advance", "clock-set-time", "clock-set"]) $(id).disabled = clock.mode !== "simulated";
      await refreshFeed();
      document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes) + 1);
    } while (again);
  } catch (e) {
    if (e instanceof Unauthorized) showLogin(); else showError(String(e.message || e));
  } finally {
    refreshing = false;
  }
}

// ---- the event feed --------------------------------------------------------------------------

const short = (t) => t.replace("com.keyway.", "");
function device(ev) {
  const parts = (ev.source || "").split("/");   // /sites/{site}/{locks|controllers|iqs}/{id}
  return { kind: parts[3] || "", id: parts[4] || "" };
}

async function refreshFeed() {
  // Page through everything after the floor (oldest first), keeping the newest FEED_MAX.
  let after = feedFloor !== null && feedFloor > 0 ? feedFloor : 0, positions;
  for (;;) {
    const events = await api("GET", "/v1/events?limit=" + PAGE + (after > 0 ? "&after=" + after : ""));
    for (const e of events) feed.set(e.position, e);
    positions = [...feed.keys()].sort((a, b) => a - b);
    while (positions.length > FEED_MAX) feed.delete(positions.shift());
    if (events.length < PAGE) break;
    after = events[events.length - 1].position;
  }
  const pending = positions.filter((p) => !FINAL_STAGES.has(feed.get(p).stage));
  feedFloor = pending.length ? pending[0] - 1 : (positions.length ? positions[positions.length - 1] : 0);
  renderFeed(positions);
}

function renderFeed(positions) {
  const body = document.querySelector("#feed tbody");
  const devSel = $("feed-lock"), typeSel = $("feed-type");
  const byId = new Map([...body.children].map((tr) => [Number(tr.dataset.position), tr]));
  let previous = null;
  for (const pos of positions) {        // oldest first; shown newest first
    const ev = feed.get(pos);
    let tr = byId.get(pos);
    if (!tr) {
      tr = document.createElement("tr");
      tr.className = "event";
      tr.id = "event-" + pos;
      tr.dataset.position = String(pos);
      tr.addEventListener("click", () => pickEvent(pos));
      for (const cls of ["time", "type", "device", "user", "method", "result", "reason", "stage"]) cell(tr, cls);
      body.insertBefore(tr, previous ? previous : body.firstChild);
    }
    previous = tr;
    const d = ev.data || {}, dev = device(ev);
    tr.dataset.type = short(ev.type);
    tr.dataset.device = dev.id;
    tr.dataset.lock = d.lock || (dev.kind === "locks" ? dev.id : "");
    tr.dataset.stage = ev.stage;
    const td = tr.children;
    td[0].textContent = (ev.time || "").replace("T", " ").replace(/\.\d+Z$/, "Z");
    td[1].textContent = short(ev.type);
    td[2].textContent = dev.id + (dev.kind === "controllers" ? " (controller)" : dev.kind === "iqs" ? " (IQ)" : "");
    td[3].textContent = d.user || "";
    td[4].textContent = d.method || "";
    td[5].textContent = d.result || "";
    td[5].className = "result"; td[5].dataset.result = d.result || "";
    td[6].textContent = d.reason || (d.alarm || "");
    td[7].textContent = ev.stage; td[7].className = "stage"; td[7].dataset.stage = ev.stage;
    byId.delete(pos);
  }
  for (const tr of byId.values()) tr.remove();
  const devices = new Set([...body.children].map((tr) => tr.dataset.device).filter(Boolean));
  for (const id of [...(site ? site.locks.map((l) => l.id) : []), ...devices]) {
    if (![...devSel.options].some((o) => o.value === id)) h("option", { value: id }, devSel, id);
  }
  applyFilter();
}

function applyFilter() {
  const dev = $("feed-lock").value, type = $("feed-type").value;
  let shown = 0;
  for (const tr of document.querySelectorAll("#feed tbody tr")) {
    const ok = (!dev || tr.dataset.device === dev || tr.dataset.lock === dev) && (!type || tr.dataset.type === type);
    tr.hidden = !ok;
    if (ok) shown++;
  }
  $("feed-count").textContent = shown + " shown of " + feed.size;
}

function pickEvent(pos) {
  const ev = feed.get(pos);
  if (!ev) return;
  for (const tr of document.querySelectorAll("#feed tr.selected")) tr.classList.remove("selected");
  $("event-" + pos).classList.add("selected");
  selectedEvent = pos;
  const d = ev.data || {}, dev = device(ev);
  if (dev.kind === "iqs") highlight("iq", dev.id);
  else highlight("lock", d.lock || (dev.kind === "controllers" && ctlState.get(dev.id) ? ctlState.get(dev.id).lock : dev.id));
}

// ---- actions ---------------------------------------------------------------------------------

function showTapResult(lockID, text, result) {
  const row = rows.get(lockID);
  if (row) { row.result.textContent = text; row.result.dataset.result = result; }
  $("last-result").textContent = lockID + ": " + text; $("last-result").dataset.result = result;
  $("tap-result").textContent = text; $("tap-result").dataset.result = result;
}

async function tap(lockID) {
  const kind = $("tap-kind").value;
  const body = { lock: lockID };
  if (kind === "tag") body.tag = $("tap-tag").value.trim();
  else if (kind === "pin") body.pin = $("tap-pin").value.trim();
  else body.user = $("user").value;
  showTapResult(lockID, "…", "");
  let text, result;
  try {
    const r = await api("POST", "/v1/taps", body);
    result = r.result;
    text = r.result + (r.reason ? " — " + r.reason : "") + (r.open_ms ? " (open " + r.open_ms / 1000 + " s)" : "") +
      (r.user ? " · " + r.user : "") + " · " + r.method + (reachOf(lockState.get(lockID) || { in_iq_reach: true, iq_reach: [] }) !== "in" ? " · offline lock" : "");
  } catch (e) {
    if (e instanceof Unauthorized) { showLogin(); return; }
    result = "error"; text = String(e.message || e);
  }
  showTapResult(lockID, text, result);
  document.body.dataset.taps = String(Number(document.body.dataset.taps || 0) + 1);
  refresh();
}

// ---- events stream, login, start -------------------------------------------------------------

function onEvent(msg) {
  document.body.dataset.events = String(Number(document.body.dataset.events) + 1);
  refresh();
}

let stream = null;
function connect() {
  if (stream) stream.close();
  const es = stream = new EventSource("/v1/events/stream");
  es.onopen = () => { $("status").textContent = "live"; $("status").dataset.status = "live"; refresh(); };
  es.onerror = () => { $("status").textContent = "reconnecting"; $("status").dataset.status = "reconnecting"; };
  for (const t of EVENT_TYPES) es.addEventListener(t, onEvent);
}

function showLogin() {
  if (stream) { stream.close(); stream = null; }
  site = null;
  $("app").hidden = true;
  $("login").hidden = false;
  document.body.dataset.ready = "login";
  $("token").focus();
}

$("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const err = $("login-error");
  err.hidden = true;
  try {
    const r = await fetch("/v1/login", { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json" }, body: JSON.stringify({ token: $("token").value }) });
    if (!r.ok) { err.textContent = r.status === 401 ? "Wrong token." : "Login failed: HTTP " + r.status; err.hidden = false; return; }
  } catch (e) { err.textContent = String(e.message || e); err.hidden = false; return; }
  $("token").value = "";
  $("login").hidden = true;
  start();
});

$("tap-kind").addEventListener("change", () => {
  const k = $("tap-kind").value;
  $("row-user").hidden = k !== "user"; $("row-tag").hidden = k !== "tag"; $("row-pin").hidden = k !== "pin";
});
$("tap-lock").addEventListener("change", () => { selectLock($("tap-lock").value); highlight("lock", $("tap-lock").value); });
$("tap-button").addEventListener("click", () => tap($("tap-lock").value));
$("clock-advance").addEventListener("click", () => run("advance clock", () => api("POST", "/v1/clock/advance", { seconds: Number($("advance-seconds").value) })));
$("clock-set").addEventListener("click", () => run("set clock", () => api("POST", "/v1/clock/set", { time: $("clock-set-time").value.trim() })));
async function lockdown(on, lockID) {
  const body = { locked_down: on };
  if (lockID) body.locks = [lockID];
  await run("lockdown", async () => {
    const r = await api("POST", "/v1/lockdown", body);
    $("lockdown-result").textContent = (on ? "lockdown" : "lift") + (lockID ? " of " + lockID : " everywhere") + ": " +
      r.delivered.length + " delivered" + (r.pending.length ? ", pending (no online IQ): " + r.pending.join(", ") : "");
    $("lockdown-result").dataset.pending = String(r.pending.length);
  });
}
$("lockdown-all").addEventListener("click", () => lockdown(true));
$("lockdown-lift-all").addEventListener("click", () => lockdown(false));
$("lockdown-lock").addEventListener("click", () => lockdown(true, $("tap-lock").value));
$("lockdown-lift-lock").addEventListener("click", () => lockdown(false, $("tap-lock").value));
$("feed-lock").addEventListener("change", applyFilter);
$("feed-type").addEventListener("change", applyFilter);
for (const t of EVENT_TYPES) h("option", { value: short(t) }, $("feed-type"), short(t));

let built = false, polling = null;
async function start() {
  try {
    const s = await api("GET", "/v1/site");
    $("site").textContent = s.name + " — live view";
    if (!built) {
      const [locks, iqs] = await Promise.all([api("GET", "/v1/locks"), api("GET", "/v1/iqs")]);
      for (const q of iqs) iqState.set(q.id, q);
      buildMap(locks, iqs);
      const sel = $("user"), lockSel = $("tap-lock");
      for (const u of s.users) h("option", { value: u.id }, sel, u.name + " (" + u.id + ")");
      for (const l of s.locks) h("option", { value: l.id }, lockSel, l.name + " (" + l.id + ")");
      built = true;
    }
    site = s;
    $("app").hidden = false;
    $("login").hidden = true;
    await refresh();
    document.body.dataset.ready = "true";
    connect();
    // Directory changes (users, groups, fobs, PINs) write no event until a lock installs them, yet they
    // make a new access-list version at once: a slow poll keeps the pending versions on screen current.
    if (!polling) polling = setInterval(() => { if (site && !document.hidden) refresh(); }, 2000);
  } catch (e) {
    if (e instanceof Unauthorized) showLogin(); else showError(String(e.message || e));
  }
}
start();
</script>
</body>
</html>
"""#
}
