import Events
import Foundation

/// The live view served at `GET /` and `GET /live`: one self-contained HTML page (no external
/// assets, so it works offline and on an isolated test machine) that shows every door and
/// refreshes from the control API whenever the SSE stream `/v1/events/stream` reports an event.
///
/// The page only uses the public control API — it is a client like any other — and renders all
/// server data with `textContent`, never as HTML, so a hostile lock or user name cannot inject script.
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
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
  header { display: flex; gap: 2em; align-items: baseline; flex-wrap: wrap; }
  h1 { font-size: 1.4em; margin: 0 0 .5em; }
  table { border-collapse: collapse; margin-top: 1em; width: 100%; }
  th, td { border-bottom: 1px solid #ddd; padding: .35em .6em; text-align: left; vertical-align: middle; }
  th { background: #f4f4f4; }
  .state[data-state="locked"] { color: #555; }
  .state[data-state="unlocked"] { color: #0a7d22; font-weight: bold; }
  .state[data-state="office_mode"] { color: #0a5fa8; font-weight: bold; }
  .state[data-state="uncertain"] { color: #b35c00; font-weight: bold; }
  .led { display: inline-block; width: .9em; height: .9em; border-radius: 50%; border: 1px solid #888; vertical-align: middle; margin-right: .3em; background: #ddd; }
  .led[data-led="green"] { background: #16c13a; box-shadow: 0 0 6px #16c13a; }
  .led[data-led="red"] { background: #e02424; box-shadow: 0 0 6px #e02424; }
  .alarm { color: #c00; font-weight: bold; }
  .result[data-result="granted"] { color: #0a7d22; font-weight: bold; }
  .result[data-result="denied"], .result[data-result="error"] { color: #c00; font-weight: bold; }
  #status[data-status="live"] { color: #0a7d22; }
  #status[data-status="reconnecting"] { color: #b35c00; }
  #log { font-family: ui-monospace, monospace; font-size: 12px; max-height: 14em; overflow: auto; background: #fafafa; border: 1px solid #eee; padding: .5em; }
</style>
</head>
<body data-events="0" data-refreshes="0">
<header>
  <h1 id="site">Keyway</h1>
  <span>Clock: <b id="clock">…</b></span>
  <span>Stream: <b id="status" data-status="connecting">connecting</b></span>
  <label>Tap as <select id="user"></select></label>
  <span>Last tap: <b id="last-result" class="result">—</b></span>
</header>
<p id="error" class="alarm" hidden></p>
<table id="doors">
  <thead><tr><th>Lock</th><th>State</th><th>LED / beep</th><th>Door</th><th>Office mode</th><th>IQ reach</th><th>Battery</th><th></th><th>Result</th></tr></thead>
  <tbody></tbody>
</table>
<h2>Events</h2>
<div id="log"></div>
<script>
"use strict";
const EVENT_TYPES = __EVENT_TYPES__;
const $ = (id) => document.getElementById(id);
const rows = new Map();

function showError(msg) { const e = $("error"); e.textContent = msg; e.hidden = !msg; }

async function api(method, path, body) {
  const init = { method, headers: { "Accept": "application/json" } };
  if (body !== undefined) { init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
  const r = await fetch(path, init);
  let data = null;
  try { data = await r.json(); } catch (_) { /* not JSON */ }
  if (!r.ok) {
    const e = data && data.error ? data.error : {};
    throw new Error(method + " " + path + ": HTTP " + r.status + " " + (e.message || "") + (e.field ? " (" + e.field + ")" : ""));
  }
  return data;
}

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
  row.battery = cell(tr, "battery");
  const btn = document.createElement("button");
  btn.className = "tap"; btn.textContent = "Tap"; btn.dataset.lock = lock.id;
  btn.addEventListener("click", () => tap(lock.id));
  cell(tr, "action").appendChild(btn);
  row.result = cell(tr, "result");
  row.result.id = "result-" + lock.id;
  document.querySelector("#doors tbody").appendChild(tr);
  rows.set(lock.id, row);
  return row;
}

function render(locks, controllers) {
  const byLock = new Map(controllers.map((c) => [c.lock, c]));
  for (const l of locks) {
    const row = rowFor(l);
    row.name.textContent = l.name + " (" + l.id + ")";
    row.state.textContent = l.state;
    row.state.dataset.state = l.state;
    const fb = l.feedback || {};
    row.led.dataset.led = fb.led || "off";
    row.ledText.textContent = (fb.led || "off") + (fb.beep && fb.beep !== "none" ? " · " + fb.beep : "");
    const c = byLock.get(l.id);
    if (c) {
      const parts = [];
      parts.push(c.door_open === undefined ? "no sensor" : (c.door_open ? "open" : "closed"));
      if (!c.powered) parts.push("controller unpowered");
      row.door.textContent = parts.join(", ");
      row.door.dataset.alarm = c.alarm || "";
      if (c.alarm) { const a = document.createElement("span"); a.className = "alarm"; a.textContent = " ALARM " + c.alarm; row.door.appendChild(a); }
    } else {
      row.door.textContent = "—";
      row.door.dataset.alarm = "";
    }
    row.office.textContent = l.office_mode ? "on" : "off";
    row.reach.textContent = l.in_iq_reach ? l.iq_reach.join(", ") : "offline (no IQ)";
    row.battery.textContent = (l.battery_level !== undefined ? l.battery_level + "%" : "—") + (l.battery_low ? " LOW" : "");
  }
}

let refreshing = false, again = false;
async function refresh() {
  if (refreshing) { again = true; return; }
  refreshing = true;
  try {
    do {
      again = false;
      const [locks, controllers, clock] = await Promise.all([api("GET", "/v1/locks"), api("GET", "/v1/controllers"), api("GET", "/v1/clock")]);
      render(locks, controllers);
      $("clock").textContent = clock.now + " (" + clock.mode + ")";
      document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes) + 1);
      showError("");
    } while (again);
  } catch (e) {
    showError(String(e.message || e));
  } finally {
    refreshing = false;
  }
}

async function tap(lockID) {
  const user = $("user").value;
  const row = rows.get(lockID);
  row.result.textContent = "…"; row.result.dataset.result = "";
  let text, result;
  try {
    const r = await api("POST", "/v1/taps", { lock: lockID, user });
    result = r.result;
    text = r.result + (r.reason ? " — " + r.reason : "") + (r.open_ms ? " (open " + r.open_ms / 1000 + " s)" : "");
  } catch (e) {
    result = "error"; text = String(e.message || e);
  }
  row.result.textContent = text; row.result.dataset.result = result;
  $("last-result").textContent = lockID + ": " + text; $("last-result").dataset.result = result;
  refresh();
}

function onEvent(msg) {
  document.body.dataset.events = String(Number(document.body.dataset.events) + 1);
  let line = msg.type;
  try {
    const ev = JSON.parse(msg.data);
    line = (ev.time || "") + "  " + msg.type.replace("com.keyway.", "") + (ev.subject ? "  " + ev.subject : "");
  } catch (_) { /* keep the type */ }
  const div = document.createElement("div"); div.textContent = line;
  const log = $("log"); log.prepend(div);
  while (log.childElementCount > 50) log.lastElementChild.remove();
  refresh();
}

function connect() {
  const es = new EventSource("/v1/events/stream");
  es.onopen = () => { $("status").textContent = "live"; $("status").dataset.status = "live"; refresh(); };
  es.onerror = () => { $("status").textContent = "reconnecting"; $("status").dataset.status = "reconnecting"; };
  for (const t of EVENT_TYPES) es.addEventListener(t, onEvent);
}

async function start() {
  try {
    const site = await api("GET", "/v1/site");
    $("site").textContent = site.name + " — live view";
    const sel = $("user");
    for (const u of site.users) { const o = document.createElement("option"); o.value = u.id; o.textContent = u.name + " (" + u.id + ")"; sel.appendChild(o); }
    await refresh();
    document.body.dataset.ready = "true";
  } catch (e) {
    showError(String(e.message || e));
  }
  connect();
}
start();
</script>
</body>
</html>
"""#
}
