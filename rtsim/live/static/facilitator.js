// rtsim: the room's shared screen (/facilitator). Reads /facilitator/stats every second and
// steps the room's transport level with POST /facilitator/room (docs/protocol.md).
//
// In secret mode the control needs an admin token (rtsim token --admin) or the server's
// secret: open the page as /facilitator?token=T. The token is kept in this tab's
// sessionStorage and taken out of the address bar, so the projector does not show it.
"use strict";

const $ = (sel) => document.querySelector(sel);
const KEY = "rtsim-facilitator-token";
const NAMES = { websocket: "WebSocket", sse: "SSE", "long-polling": "long polling", polling: "polling" };

// Everything a test (or the curious) may read.
const fac = (window.fac = { stats: null, room: null, control: null, errors: 0, openMode: null });

function credential() {
  const params = new URLSearchParams(location.search);
  const given = params.get("token");
  if (given) {
    sessionStorage.setItem(KEY, given);
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : ""));
  }
  return sessionStorage.getItem(KEY);
}

const token = credential();

function fmt(v, digits) {
  if (v === null || v === undefined) return "–";
  return digits === undefined ? String(v) : Number(v).toFixed(digits);
}

function show(stats) {
  fac.stats = stats;
  const room = (fac.room = stats.room);
  const levels = room.levels;
  const at = levels.indexOf(room.transport);
  for (const li of document.querySelectorAll("#rungs li")) {
    const i = levels.indexOf(li.dataset.level);
    li.classList.toggle("current", i === at);
    li.classList.toggle("allowed", i >= at); // the level and the lesser rungs below it
    li.classList.toggle("degraded", at > 0);
    li.querySelector("button").disabled = !canControl();
  }
  $("#polls").textContent = `every ${room.poll_s} s`;
  $("#overloaded").hidden = !room.overloaded;
  $("#down").disabled = !canControl() || levels.indexOf(room.ceiling) === levels.length - 1;
  $("#up").disabled = !canControl() || levels.indexOf(room.ceiling) === 0;

  const counts = { ...stats.connections, polling: stats.polling_clients };
  const most = Math.max(1, ...Object.values(counts).map((n) => n || 0));
  for (const tr of document.querySelectorAll("#connections tr")) {
    const n = counts[tr.dataset.transport];
    tr.querySelector(".n").textContent = n === undefined ? "off" : fmt(n);
    tr.querySelector(".bar span").style.width = `${(100 * (n || 0)) / most}%`;
  }

  $("#window").textContent = fmt(stats.window_s === null ? null : Math.round(stats.window_s));
  $("#published").textContent = fmt(stats.published_per_s, 1);
  $("#delivered").textContent = fmt(stats.deliveries_per_s, 1);
  const lat = stats.latency_ms || {};
  const none = !lat.samples;
  $("#p50").textContent = none ? "–" : fmt(lat.p50, 1);
  $("#p95").textContent = none ? "–" : fmt(lat.p95, 1);
  $("#p99").textContent = none ? "–" : fmt(lat.p99, 1);
  $("#reconnects").textContent = fmt(stats.reconnects.in_window);
  $("#degraded").textContent = fmt(stats.degraded.in_window);
  $("#members").textContent = fmt(stats.presence_members);
  $("#totals").textContent =
    `${stats.reconnects.total} reconnects, ${stats.degraded.total} told to step down,` +
    ` ${stats.refused.total} refused, ${stats.gaps} gaps, ${stats.token_expired} tokens expired,` +
    ` ${stats.slow_consumer_drops} slow consumers dropped`;
}

function canControl() {
  return fac.openMode === true || !!token;
}

function say(text, error) {
  fac.control = text;
  const p = $("#control");
  p.textContent = text;
  p.className = error ? "muted error" : "muted";
}

async function refresh() {
  try {
    const r = await fetch("/facilitator/stats", { cache: "no-store" });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    show(await r.json());
  } catch (e) {
    fac.errors++;
    $("#server").textContent = `no answer from the server (${e.message || e})`;
    return;
  }
  $("#server").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

async function step(body) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  try {
    const r = await fetch("/facilitator/room", { method: "POST", headers, body: JSON.stringify(body) });
    const answer = await r.json().catch(() => ({}));
    if (!r.ok) {
      const err = answer.error || {};
      say(`not stepped: ${r.status} ${err.code || ""} — ${err.message || ""}`, true);
      return;
    }
    const to = NAMES[answer.ceiling] || answer.ceiling;
    say(answer.changed ? `the room may use ${to} at best` : `already at ${to}`);
  } catch (e) {
    say(`not stepped: ${e.message || e}`, true);
  }
  refresh();
}

async function boot() {
  try {
    const health = await (await fetch("/healthz", { cache: "no-store" })).json();
    fac.openMode = !!health.open_mode;
  } catch (e) {
    fac.openMode = null;
  }
  if (!canControl()) {
    say("watching only: open this page as /facilitator?token=T with an admin token" +
      " (rtsim token --admin) to step the room", true);
  }
  for (const li of document.querySelectorAll("#rungs li")) {
    li.querySelector("button").addEventListener("click", () => step({ transport: li.dataset.level }));
  }
  $("#down").addEventListener("click", () => step({ step: "down" }));
  $("#up").addEventListener("click", () => step({ step: "up" }));
  await refresh();
  setInterval(refresh, 1000);
}

window.facStep = step;
boot();
