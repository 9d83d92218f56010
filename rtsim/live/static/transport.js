// rtsim demo: a client-side transport layer over the rtsim live server (docs/protocol.md).
//
//   const t = new RtTransport({ base: "", token, channels: ["chat:lobby", "cursor:lobby"],
//                               resume: ["chat:lobby"], presence: { channel, state } });
//   t.onmessage = (msg) => ...;  t.onpresence = (frame) => ...;  t.onstatus = (s) => ...;
//   t.start();  await t.publish(channel, data);
//
// (The polling transports are in polling.js, loaded after this file.)
//
// * Fallback: WebSocket → SSE → long polling. A transport that never opens (the server
//   disabled it, a proxy blocks it) is skipped at once; one that opened and then dropped is
//   retried with exponential backoff and full jitter (delay = random(0, min(cap, base·2^n))).
//   n restarts at 0 only after a connection stayed open `stableAfterMs` (5 s), as
//   rtsim.core.reconnect does: a server that accepts and closes at once is not re-dialled fast.
// * Resume: the last id of each channel in `resume` is kept and sent back on reconnect
//   (WebSocket `since`, SSE `?last_event_id=`, long-poll `after`), so nothing is missed.
//   Positions carry the server's epoch ("EPOCH:ID"); after a server restart the old one is
//   answered with a gap (reason "epoch", with the new `position`): the page moves there and
//   goes on. A refused cursor (`bad_cursor`) is dropped and the channel subscribed anew.
// * Publish: over the WebSocket with an ack (`ref`), else POST /publish; rejects on error
//   or after `ackTimeoutMs`.
// * A rejected token is not a transient fault: a 401/403 (on a poll, or found by asking
//   /poll after a WebSocket or EventSource failed to open — browsers hide their status), or
//   an unauthorized `error` frame, stops the transport and calls `onrefused({status, code,
//   message})`; it does not retry.
// * An expired token ends the connection at its `exp` (WebSocket close 4001
//   `token_expired`, an SSE `error` event, a long poll's 401): the same `onrefused` with
//   code `token_expired`, at once and without a retry loop (the page asks for a new link).
// * Degradation (docs/protocol.md): the server may send the page down the cascade — under
//   overload, or when the facilitator steps the room down — with a `degrade` frame/event
//   `{transport, poll_s}`, a 503 (seen through /poll, since browsers hide the status), or
//   a poll answer `"degraded": true`. The rung named becomes a ceiling: the page moves to
//   the best transport of its order at or below it, from its cursor (on "polling" it polls
//   `/poll?timeout=0` every poll_s s), and goes back up on `recover` or a poll answer that
//   allows more, as rtsim.core.reconnect does. A move is not a failure: no backoff.
"use strict";

const ORDER = ["websocket", "sse", "long-polling"];
// The article's cascade: a higher rank is a lesser transport ("polling": the server's only).
const RANK = { websocket: 0, sse: 1, "long-polling": 2, polling: 3 };
const AUTH_CODES = new Set(["no_token", "invalid_token", "bad_token", "token_expired", "forbidden"]);
const CLOSE_TOKEN_EXPIRED = 4001; // the server's close code when the token runs out

function cursorString(ids) {
  return Object.keys(ids).sort().map((ch) => `${ch}=${ids[ch]}`).join(",");
}

// "EPOCH:ID" → its epoch ("" if none) / id; and back (docs/protocol.md, Epochs).
function epochOf(pos) {
  const i = pos ? pos.lastIndexOf(":") : -1;
  return i >= 0 ? pos.slice(0, i) : "";
}

function withEpoch(epoch, id) {
  return epoch ? `${epoch}:${id}` : id;
}

function parseCursor(text, into) {
  if (!text) return;
  for (const part of text.split(",")) {
    const i = part.lastIndexOf("=");
    if (i > 0) into[part.slice(0, i)] = part.slice(i + 1);
  }
}

class RtTransport {
  constructor(opts) {
    this.base = opts.base || "";
    this.token = opts.token || null;
    this.channels = opts.channels;
    this.resume = new Set(opts.resume || opts.channels);
    this.presence = opts.presence || null; // {channel, state}
    this.order = opts.order || ORDER;
    this.backoffBaseMs = opts.backoffBaseMs || 500;
    this.backoffCapMs = opts.backoffCapMs || 15000;
    this.stableAfterMs = opts.stableAfterMs ?? 5000; // reconnecting-websocket's minUptime
    this.ackTimeoutMs = opts.ackTimeoutMs || 5000;
    this.pollTimeoutS = opts.pollTimeoutS || 25;
    this.pollS = 5; // interval polling while degraded (the server's poll_s replaces it)
    this.ceiling = null; // the best transport the server allows now (null: any)
    this.moves = 0; // times the server moved us down or up the cascade
    this.clientId = opts.clientId || Math.random().toString(36).slice(2, 10);
    this.ids = {}; // channel -> last id seen (resume point)
    this.index = 0; // position in this.order
    this.transport = null;
    this.state = "idle";
    this.reconnects = 0;
    this.attempt = 0;
    this.log = [];
    this.onmessage = () => {};
    this.onpresence = () => {};
    this.onstatus = () => {};
    this.onerror = () => {};
    this.onrefused = () => {};
    this.refused = null; // {status, code, message} once the server rejected the token
    this._pending = new Map(); // ref -> {resolve, reject, timer}
    this._ref = 0;
    this._conn = null; // the current connection's close function
    this._gen = 0; // connection generation: callbacks of old ones are ignored
    this._timers = [];
  }

  // --- life cycle --------------------------------------------------------------------
  start() {
    this._connect();
    this._timers.push(setInterval(() => this._heartbeat(), 20000));
    addEventListener("pagehide", () => this.leave());
  }

  stop() {
    this._gen++;
    if (this._conn) this._conn();
    this._conn = null;
    this._timers.forEach(clearInterval);
    this._set("stopped");
  }

  _q(extra) {
    const p = new URLSearchParams(extra || {});
    if (this.token) p.set("token", this.token);
    return p;
  }

  _url(path, params) {
    return `${this.base}${path}?${params.toString()}`;
  }

  _set(state, note) {
    this.state = state;
    if (note) this.log.push(`${new Date().toISOString().slice(11, 19)} ${note}`);
    this.onstatus(this.status());
  }

  status() {
    return {
      transport: this.transport,
      state: this.state,
      ceiling: this.ceiling,
      pollS: this.pollS,
      moves: this.moves,
      reconnects: this.reconnects,
      ids: { ...this.ids },
      log: this.log.slice(-8),
    };
  }

  // The transport to use: the order's, or the best one at or below the server's ceiling.
  _name() {
    if (!this.ceiling) return this.order[this.index];
    for (let i = this.index; i < this.order.length; i++) {
      if (RANK[this.order[i]] >= RANK[this.ceiling]) return this.order[i];
    }
    return "polling";
  }

  _connect() {
    const gen = ++this._gen;
    const name = this._name();
    this.transport = name;
    this._set("connecting", `connecting with ${name}`);
    let opened = false;
    const onOpen = () => {
      if (gen !== this._gen) return;
      opened = true;
      this._openedAt = Date.now(); // the backoff restarts only once stable (see _down)
      this._set("open", `${name} open`);
      this._sendPresence();
    };
    const onDown = (why) => {
      if (gen !== this._gen) return;
      this._gen++;
      if (this._conn) this._conn();
      this._conn = null;
      this._failPending(`connection lost (${why})`);
      if (opened) {
        this._down(name, opened, why);
        return;
      }
      // It never opened: a rejected token, a degraded server (its 503 is hidden from
      // scripts), or a transient fault? Ask before retrying.
      const g = this._gen;
      this._authCheck(name).then((answer) => {
        if (g !== this._gen) return; // stopped (or restarted) meanwhile
        if (answer && answer.degrade) this._degrade(answer.degrade);
        else if (answer) this._refuse(answer);
        else this._down(name, opened, why);
      });
    };
    const open = name === "polling" ? "_open_long_polling" : "_open_" + name.replace("-", "_");
    this[open](onOpen, onDown);
  }

  // Why `name` did not open, as /poll (timeout 0) says: a refusal {status, code, message}
  // of our token, {degrade: {transport, poll_s}} if the server allows only a lesser
  // transport than `name` now, or null (transient: retry).
  async _authCheck(name) {
    const p = this._q({ timeout: 0 });
    for (const ch of this.channels) p.append("channel", ch);
    try {
      const r = await fetch(this._url("/poll", p), { cache: "no-store" });
      if (r.ok) {
        const body = await r.json().catch(() => ({}));
        const level = body.degraded ? "polling" : body.transport;
        if (RANK[level] > RANK[name]) return { degrade: { transport: level, poll_s: body.poll_s } };
        return null;
      }
      if (r.status !== 401 && r.status !== 403) return null;
      return await this._refusal(r);
    } catch (e) {
      return null; // the server is unreachable: transient, retry
    }
  }

  // --- degradation (docs/protocol.md): the server moves us down or up the cascade ------
  _degrade(f) {
    const to = RANK[f.transport] !== undefined ? f.transport : "polling";
    if (f.poll_s > 0) this.pollS = f.poll_s;
    this.ceiling = to;
    this._move(to === "polling" ? `degraded: polling every ${this.pollS} s` : `server: step down to ${to}`);
  }

  // A `recover` frame/event or a poll answer allowing up to `f.transport` (none: every one).
  // Only a page the server sent down goes back up (one that fell back by itself stays).
  _recover(f) {
    const to = RANK[f.transport] !== undefined ? f.transport : "websocket";
    if (!this.ceiling || RANK[to] >= RANK[this.ceiling]) return false;
    this.ceiling = to === "websocket" ? null : to;
    this.index = 0;
    this._move(`server: step up to ${to}`);
    return true;
  }

  // Not a failure: close this connection and open the allowed one after a short, jittered
  // pause (up to poll_s for polling, as the core policy), resuming from our cursor.
  _move(note) {
    this._gen++;
    if (this._conn) this._conn();
    this._conn = null;
    this._failPending("moving to another transport");
    this.moves++;
    this.attempt = 0;
    const next = this._name();
    const delay = Math.random() * (next === "polling" ? this.pollS * 1000 : this.backoffBaseMs);
    this._set("moving", `${note}; ${next} in ${Math.round(delay)} ms`);
    const gen = this._gen;
    setTimeout(() => {
      if (gen === this._gen) this._connect();
    }, delay);
  }

  async _refusal(r) {
    const body = await r.json().catch(() => ({}));
    const err = body.error || {};
    return { status: r.status, code: err.code || "", message: err.message || `HTTP ${r.status}` };
  }

  _refuse(refusal) {
    this.refused = refusal;
    this.stop();
    this._set("refused", `token rejected (${refusal.status} ${refusal.code}): not retrying`);
    this.onrefused(refusal);
  }

  // The connection is down (or never opened) for a transient reason: fall back or retry.
  _down(name, opened, why) {
    const gen = this._gen;
    const at = this.order.indexOf(name); // -1 on the server's polling rung
    if (!opened && at >= 0 && at + 1 < this.order.length) {
      this.index = at + 1; // never opened: fall back at once
      this._set("fallback", `${name} failed before opening (${why}); falling back`);
      this._connect();
      return;
    }
    if (!opened) this.index = 0; // nothing worked: start the list over after a pause
    if (opened && Date.now() - this._openedAt >= this.stableAfterMs) this.attempt = 0;
    const cap = Math.min(this.backoffCapMs, this.backoffBaseMs * 2 ** this.attempt);
    // Full jitter, but never sooner than a 429/503's Retry-After (docs/protocol.md).
    const delay = Math.max(Math.random() * cap, this._retryAfterMs || 0);
    this._retryAfterMs = 0;
    this.attempt = Math.min(this.attempt + 1, 20);
    this.reconnects++;
    this._set("reconnecting", `${name} down (${why}); retry in ${Math.round(delay)} ms`);
    setTimeout(() => {
      if (gen === this._gen) this._connect();
    }, delay);
  }


  _deliver(msg) {
    const ch = msg.channel;
    if (this.resume.has(ch)) this.ids[ch] = withEpoch(epochOf(this.ids[ch]), msg.id);
    this.onmessage(msg);
  }

  // A gap frame/event: resubscribe from its position (the messages that follow are after it).
  _gap(f) {
    if (f.position && this.resume.has(f.channel)) this.ids[f.channel] = f.position;
    this.onerror({ type: "gap", ...f });
  }

  _resumeIds() {
    const out = {};
    for (const ch of this.resume) if (this.ids[ch] !== undefined) out[ch] = this.ids[ch];
    return out;
  }

  // --- WebSocket ---------------------------------------------------------------------
  _open_websocket(onOpen, onDown) {
    const gen = this._gen; // this connection's generation (see _connect)
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const base = this.base || `${proto}//${location.host}`;
    const url = base.replace(/^http/, "ws") + "/ws?" + this._q().toString();
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (e) {
      setTimeout(() => onDown("cannot open"), 0);
      return;
    }
    this._ws = ws;
    let subscribed = 0;
    const pending = new Set(this.channels); // subscribe sent, "subscribed" not yet back
    ws.onopen = () => {
      for (const ch of this.channels) {
        const frame = { type: "subscribe", channel: ch };
        if (this.ids[ch] !== undefined && this.resume.has(ch)) frame.since = this.ids[ch];
        ws.send(JSON.stringify(frame));
      }
    };
    ws.onmessage = (ev) => {
      const f = JSON.parse(ev.data);
      if (f.type === "message") this._deliver(f);
      else if (f.type === "presence") this.onpresence(f);
      else if (f.type === "subscribed") {
        pending.delete(f.channel);
        const had = this.ids[f.channel];
        if (this.resume.has(f.channel) && (had === undefined || !epochOf(had))) {
          this.ids[f.channel] = f.since;
        }
        if (++subscribed === this.channels.length) onOpen();
      } else if (f.type === "ack") this._settle(f.ref, null, f.id);
      else if (f.type === "error") {
        if (f.ref !== undefined) this._settle(f.ref, `${f.code}: ${f.message}`);
        else if (AUTH_CODES.has(f.code)) {
          // e.g. a subscribe the token does not allow: retrying cannot fix it
          this._gen++;
          if (this._conn) this._conn();
          this._conn = null;
          this._refuse({ status: f.code === "forbidden" ? 403 : 401, code: f.code, message: f.message });
        } else if (f.code === "bad_cursor" && pending.size) {
          // A refused resume: subscribe from now on rather than stay unsubscribed.
          this.onerror(f);
          for (const ch of pending) {
            delete this.ids[ch];
            ws.send(JSON.stringify({ type: "subscribe", channel: ch }));
          }
        } else this.onerror(f);
      } else if (f.type === "gap") this._gap(f);
      else if (f.type === "degrade") this._degrade(f);
      else if (f.type === "recover") this._recover(f);
    };
    ws.onclose = (ev) => {
      if (ev.code === CLOSE_TOKEN_EXPIRED) {
        if (gen !== this._gen) return;
        this._gen++;
        this._conn = null;
        this._ws = null;
        this._refuse({ status: 401, code: "token_expired", message: "the token has expired" });
      } else onDown(`websocket closed ${ev.code}`);
    };
    ws.onerror = () => {}; // onclose follows
    this._conn = () => {
      ws.onclose = ws.onmessage = null;
      ws.close();
      this._ws = null;
    };
  }

  // --- Server-Sent Events ------------------------------------------------------------
  _open_sse(onOpen, onDown) {
    const gen = this._gen; // this connection's generation (see _connect)
    const p = this._q();
    for (const ch of this.channels) p.append("channel", ch);
    const cursor = cursorString(this._resumeIds());
    if (cursor) p.set("last_event_id", cursor);
    const es = new EventSource(this._url("/sse", p));
    let open = false;
    const track = (ev) => {
      if (ev.lastEventId) parseCursor(ev.lastEventId, this.ids);
    };
    es.onopen = () => {
      open = true;
      onOpen();
      this._learnStart();
    };
    es.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      this._deliver(msg);
      if (ev.lastEventId) {
        const all = {};
        parseCursor(ev.lastEventId, all);
        for (const ch of this.resume) if (all[ch] !== undefined) this.ids[ch] = all[ch];
      }
    };
    es.addEventListener("presence", (ev) => this.onpresence(JSON.parse(ev.data)));
    es.addEventListener("degrade", (ev) => this._degrade(JSON.parse(ev.data)));
    es.addEventListener("recover", (ev) => this._recover(JSON.parse(ev.data)));
    es.addEventListener("gap", (ev) => {
      track(ev);
      this._gap(JSON.parse(ev.data));
    });
    // We own reconnection (backoff + jitter + fallback), so the EventSource's own retry is
    // turned off by closing it on the first error.
    // The server's own `event: error` (e.g. token_expired before the stream ends) arrives
    // here too, as a MessageEvent with data.
    es.onerror = (ev) => {
      const f = ev.data ? JSON.parse(ev.data) : null;
      if (f && AUTH_CODES.has(f.code)) {
        if (gen !== this._gen) return;
        this._gen++;
        es.close();
        this._conn = null;
        this._refuse({ status: 401, code: f.code, message: f.message });
      } else onDown(open ? "sse stream ended" : "sse refused");
    };
    this._conn = () => es.close();
  }

  // The stream's start cursor travels in an id-only event, which EventSource does not show
  // to scripts; ask /poll (timeout 0) where each channel stands so a drop before the first
  // message still resumes from here.
  async _learnStart() {
    const missing = [...this.resume].filter((ch) => this.ids[ch] === undefined);
    if (!missing.length) return;
    const p = this._q({ timeout: 0 });
    for (const ch of missing) p.append("channel", ch);
    try {
      const r = await fetch(this._url("/poll", p), { cache: "no-store" });
      if (!r.ok) return;
      const all = {};
      parseCursor((await r.json()).cursor, all);
      for (const ch of missing) if (this.ids[ch] === undefined) this.ids[ch] = all[ch];
    } catch (e) {
      /* best effort */
    }
  }

  // --- presence ----------------------------------------------------------------------
  setPresence(state) {
    if (!this.presence) return;
    this.presence.state = state;
    this._sendPresence();
  }

  _sendPresence() {
    if (!this.presence || this.state !== "open") return;
    const { channel, state } = this.presence;
    if (this.transport === "websocket" && this._ws) {
      this._ws.send(JSON.stringify({ type: "presence", channel, state }));
    } else {
      this._postPresence({ channel, client: this.clientId, state });
    }
  }

  async _postPresence(body, keepalive) {
    try {
      const r = await fetch(this._url("/presence", this._q()), {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
        keepalive: !!keepalive,
      });
      if (r.ok && this._polls()) this.onpresence(await r.json());
    } catch (e) {
      /* the next heartbeat retries */
    }
  }

  _heartbeat() {
    if (this.state !== "open" || !this.presence) return;
    if (this.transport === "websocket" && this._ws) {
      this._ws.send(JSON.stringify({ type: "heartbeat" }));
    } else {
      // Carries our state so a false offline comes back as we were; never changes it.
      const { channel, state } = this.presence;
      this._postPresence({ channel, client: this.clientId, state, heartbeat: true });
    }
  }

  leave() {
    if (this.presence && this.transport !== "websocket") {
      this._postPresence(
        { channel: this.presence.channel, client: this.clientId, leave: true },
        true
      );
    }
  }

  // --- publish -----------------------------------------------------------------------
  publish(channel, data) {
    if (this.transport === "websocket" && this._ws && this.state === "open") {
      return new Promise((resolve, reject) => {
        const ref = `r${++this._ref}`;
        const timer = setTimeout(
          () => this._settle(ref, `no ack within ${this.ackTimeoutMs} ms`),
          this.ackTimeoutMs
        );
        this._pending.set(ref, { resolve, reject, timer });
        this._ws.send(JSON.stringify({ type: "publish", channel, data, ref }));
      });
    }
    return this._post(channel, data);
  }

  async _post(channel, data) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), this.ackTimeoutMs);
    try {
      const r = await fetch(this._url("/publish", this._q()), {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ channel, data }),
        signal: ctl.signal,
      });
      const body = await r.json().catch(() => ({}));
      if (!r.ok) throw new Error(body.error ? `${body.error.code}: ${body.error.message}` : `HTTP ${r.status}`);
      return body.id;
    } catch (e) {
      throw new Error(e.name === "AbortError" ? `no answer within ${this.ackTimeoutMs} ms` : e.message);
    } finally {
      clearTimeout(timer);
    }
  }

  _settle(ref, error, id) {
    const p = this._pending.get(ref);
    if (!p) return;
    this._pending.delete(ref);
    clearTimeout(p.timer);
    if (error) p.reject(new Error(error));
    else p.resolve(id);
  }

  _failPending(why) {
    for (const ref of [...this._pending.keys()]) this._settle(ref, why);
  }
}

window.RtTransport = RtTransport;
