// rtsim demo page: chat (optimistic send), presence, live cursors, transport status.
// Query parameters: ?room=lobby&name=Ada&token=T&transports=websocket,sse,long-polling
"use strict";

const $ = (sel) => document.querySelector(sel);
const params = new URLSearchParams(location.search);
const room = (params.get("room") || "lobby").replace(/[^A-Za-z0-9_\-.@]/g, "") || "lobby";
const token = params.get("token");
const COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324"];
const me = {
  id: Math.random().toString(36).slice(2, 10),
  name: params.get("name") || localStorage.getItem("rtsim-name") || `guest-${Math.floor(Math.random() * 900 + 100)}`,
};
me.color = COLORS[parseInt(me.id, 36) % COLORS.length];
const CHAT = `chat:${room}`;
const CURSOR = `cursor:${room}`;

// Everything a test (or a curious participant with the console open) may read.
const rt = (window.rt = {
  me, room, received: [], chat: [], members: {}, latency: [], transport: null,
  state: "idle", reconnects: 0, errors: [], epoch: "", degraded: "", moves: 0,
});

let t = null;

async function boot() {
  $("#room").textContent = room;
  $("#name").value = me.name;
  let health = {};
  try {
    health = await (await fetch("/healthz", { cache: "no-store" })).json();
  } catch (e) {
    /* show what we can */
  }
  $("#server").textContent = `backplane ${health.backplane || "?"}, ${health.open_mode ? "open mode" : "tokens required"}`;
  if (health.open_mode === false && !token) {
    $("#needtoken").hidden = false;
    rt.state = "needs token";
    return;
  }
  const order = params.get("transports") ? params.get("transports").split(",") : undefined;
  t = window.transport = new RtTransport({
    token, channels: [CHAT, CURSOR], resume: [CHAT], order, clientId: me.id,
    presence: { channel: CHAT, state: presenceState() },
  });
  t.onmessage = onMessage;
  t.onpresence = onPresence;
  t.onstatus = onStatus;
  t.onerror = (f) => {
    rt.errors.push(f);
    if (f.type === "gap" && f.reason === "epoch") {
      rt.epoch = f.epoch; // the server restarted (or its broker was reset): ids start anew
      note("the server restarted: resumed from its new start (gap)");
    } else if (f.type === "gap") note(`missed ${f.missed} message(s) while away (gap)`);
    else note(`error: ${f.code || ""} ${f.message || ""}`);
  };
  t.onrefused = (r) => {
    // Not a transient fault: say so and stop (the transport does not retry).
    rt.state = "refused";
    rt.refused = r;
    if (r.code === "token_expired") {
      $("#expired").hidden = false; // the link ran out: ask for a new one
      return;
    }
    const box = $("#refused");
    box.querySelector(".why").textContent = `${r.status} ${r.code}: ${r.message}`;
    box.hidden = false;
  };
  t.start();
  setInterval(probe, 5000);
  setInterval(expireCursors, 2000);
}

function presenceState() {
  return { name: me.name, color: me.color, id: me.id };
}

// --- status panel -------------------------------------------------------------------------
function onStatus(s) {
  rt.transport = s.transport;
  rt.state = s.state;
  rt.reconnects = s.reconnects;
  $("#transport").textContent = s.transport || "–";
  $("#state").textContent = s.state;
  $("#state").className = `state ${s.state}`;
  $("#reconnects").textContent = String(s.reconnects);
  // Sent down the cascade by the server (overload, or the facilitator's room control).
  rt.moves = s.moves;
  rt.degraded = s.ceiling === "polling" ? `degraded: polling every ${s.pollS} s`
    : s.ceiling ? `stepped down: ${s.ceiling} at best` : "";
  $("#degraded").textContent = rt.degraded || "all transports allowed";
  $("#degraded").className = rt.degraded ? "degraded" : "";
  $("#lastid").textContent = s.ids[CHAT] || "–";
  $("#log").textContent = s.log.join("\n");
  if (s.state === "open") setTimeout(probe, 300);
  if (s.state === "connecting") {
    members = {}; // the new connection's snapshot refills it
    renderMembers();
  }
}

function showLatency(ms) {
  rt.latency.push(ms);
  if (rt.latency.length > 50) rt.latency.shift();
  const sorted = [...rt.latency].sort((a, b) => a - b);
  const med = sorted[Math.floor(sorted.length / 2)];
  $("#latency").textContent = `${ms.toFixed(1)} ms (median ${med.toFixed(1)} of ${sorted.length})`;
}

function note(text) {
  const li = document.createElement("li");
  li.className = "note";
  li.textContent = text;
  $("#messages").appendChild(li);
}

// A probe every 5 s on the cursor channel: its echo gives publish → delivery latency.
function probe() {
  if (t && t.state === "open") {
    t.publish(CURSOR, { kind: "probe", from: me.id, t: performance.now() }).catch(() => {});
  }
}

// --- messages -----------------------------------------------------------------------------
function onMessage(msg) {
  rt.received.push(msg);
  if (rt.received.length > 1000) rt.received.shift();
  const d = msg.data || {};
  if (d.from === me.id && typeof d.t === "number") showLatency(performance.now() - d.t);
  if (msg.channel === CHAT) {
    $("#lastid").textContent = msg.id;
    onChat(msg, d);
  } else if (msg.channel === CURSOR && d.kind === "cursor" && d.from !== me.id) {
    showCursor(d);
  }
}

const mine = new Map(); // mid -> {li, state, text}

function onChat(msg, d) {
  if (typeof d.text !== "string") return;
  const own = d.from === me.id && mine.get(d.mid);
  if (own) {
    setSendState(d.mid, "sent", msg.id);
    return;
  }
  // Ids repeat after a server restart (a new epoch), so "already shown" is per epoch.
  const key = `${rt.epoch}:${msg.id}`;
  if (rt.chat.some((c) => c.key === key)) return; // already shown
  rt.chat.push({ id: msg.id, key, name: d.name, text: d.text });
  addLine(d.name || "?", d.color, d.text);
}

function addLine(name, color, text) {
  const li = document.createElement("li");
  const who = document.createElement("b");
  who.textContent = name + ": ";
  who.style.color = color || "#333";
  const body = document.createElement("span");
  body.textContent = text;
  const st = document.createElement("small");
  st.className = "send-state";
  li.append(who, body, st);
  $("#messages").appendChild(li);
  $("#messages").scrollTop = 1e9;
  return li;
}

function send(text, mid) {
  mid = mid || `${me.id}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
  let entry = mine.get(mid);
  if (!entry) {
    entry = { li: addLine(me.name, me.color, text), text, state: "sending" };
    mine.set(mid, entry);
  }
  setSendState(mid, "sending");
  const data = { kind: "chat", mid, from: me.id, name: me.name, color: me.color, text, t: performance.now() };
  if (!t || t.state !== "open") {
    setSendState(mid, "failed", "not connected");
    return;
  }
  t.publish(CHAT, data).then(
    (id) => setSendState(mid, "sent", id),
    (err) => setSendState(mid, "failed", err.message)
  );
}

function setSendState(mid, state, detail) {
  const e = mine.get(mid);
  if (!e || (e.state === "sent" && state !== "sent")) return;
  e.state = state;
  const st = e.li.querySelector(".send-state");
  st.className = `send-state ${state}`;
  st.textContent = "";
  if (state === "sending") st.textContent = " sending…";
  else if (state === "sent") {
    st.textContent = " ✓ sent";
    st.title = `id ${detail}`;
    if (!rt.chat.some((c) => c.id === detail)) rt.chat.push({ id: detail, name: me.name, text: e.text, mine: true });
  } else {
    st.textContent = ` failed (${detail}) `;
    const retry = document.createElement("button");
    retry.textContent = "retry";
    retry.className = "retry";
    retry.onclick = () => send(e.text, mid);
    st.appendChild(retry);
  }
}

// --- presence -----------------------------------------------------------------------------
let members = {};

function onPresence(f) {
  if (f.channel !== CHAT) return;
  if (f.event === "snapshot") members = { ...f.members };
  else if (f.event === "join" || f.event === "update") members[f.client] = f.state;
  else if (f.event === "leave") delete members[f.client];
  renderMembers();
}

function renderMembers() {
  rt.members = members;
  const ul = $("#members");
  ul.textContent = "";
  const seen = new Set();
  for (const [key, s] of Object.entries(members)) {
    const id = (s && s.id) || key;
    if (seen.has(id)) continue;
    seen.add(id);
    const li = document.createElement("li");
    li.textContent = (s && s.name) || key;
    li.style.borderLeft = `6px solid ${(s && s.color) || "#999"}`;
    if (s && s.id === me.id) li.textContent += " (you)";
    ul.appendChild(li);
  }
  $("#count").textContent = String(seen.size);
}

// --- cursors ------------------------------------------------------------------------------
const cursors = new Map(); // from -> {el, seen}
let pendingCursor = null;
let lastSent = 0;
let cursorTimer = null;

function rateHz() {
  return Number($("#rate").value);
}

function onMove(ev) {
  const box = $("#board").getBoundingClientRect();
  pendingCursor = { x: (ev.clientX - box.left) / box.width, y: (ev.clientY - box.top) / box.height };
  // Throttle: at most `rate` cursor messages per second, the latest position always sent.
  const gap = 1000 / rateHz();
  const wait = lastSent + gap - performance.now();
  if (wait <= 0) flushCursor();
  else if (!cursorTimer) cursorTimer = setTimeout(flushCursor, wait);
}

function flushCursor() {
  cursorTimer = null;
  if (!pendingCursor || !t || t.state !== "open") return;
  lastSent = performance.now();
  const c = pendingCursor;
  pendingCursor = null;
  rt.cursorsSent = (rt.cursorsSent || 0) + 1;
  $("#sent").textContent = String(rt.cursorsSent);
  t.publish(CURSOR, { kind: "cursor", from: me.id, name: me.name, color: me.color, x: c.x, y: c.y, t: lastSent }).catch(() => {});
}

function showCursor(d) {
  let c = cursors.get(d.from);
  if (!c) {
    const el = document.createElement("div");
    el.className = "cursor";
    el.innerHTML = '<svg width="14" height="20" viewBox="0 0 14 20"><path d="M0 0 L0 16 L4 12 L7 19 L10 18 L7 11 L13 11 Z"/></svg><span></span>';
    $("#board").appendChild(el);
    c = { el };
    cursors.set(d.from, c);
  }
  c.seen = performance.now();
  c.el.style.left = `${Math.max(0, Math.min(1, d.x)) * 100}%`;
  c.el.style.top = `${Math.max(0, Math.min(1, d.y)) * 100}%`;
  c.el.querySelector("path").setAttribute("fill", d.color || "#333");
  const label = c.el.querySelector("span");
  label.textContent = d.name || "?";
  label.style.background = d.color || "#333";
  rt.cursors = Object.fromEntries([...cursors].map(([k, v]) => [k, v.el.style.left + "," + v.el.style.top]));
}

function expireCursors() {
  const now = performance.now();
  for (const [k, c] of cursors) {
    if (now - c.seen > 10000) {
      c.el.remove();
      cursors.delete(k);
    }
  }
}

// --- wiring -------------------------------------------------------------------------------
$("#chatform").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = $("#text").value.trim();
  if (text) send(text);
  $("#text").value = "";
});
$("#name").addEventListener("change", () => {
  me.name = $("#name").value.trim().slice(0, 40) || me.name;
  localStorage.setItem("rtsim-name", me.name);
  if (t) t.setPresence(presenceState());
});
$("#rate").addEventListener("input", () => ($("#ratev").textContent = `${rateHz()} Hz`));
$("#board").addEventListener("pointermove", onMove);
window.rtSend = send;
boot();
