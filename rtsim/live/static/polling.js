// rtsim demo: the polling transports of RtTransport (transport.js), kept in their own file.
//
// * Long polling: GET /poll?after=CURSOR&timeout=S in a loop; the first poll answers at
//   once with the start position, the next ones wait for news (docs/protocol.md).
// * Interval polling ("polling"), the server's degraded rung: GET /poll?timeout=0 every
//   pollS seconds from the cursor, until an answer says the server allows more.
// * Presence over HTTP while polling (GET /presence every 3 s).
// Load after transport.js: it adds these methods to RtTransport.prototype.
"use strict";

// The wait a 429/503 asks for, ms: the body's error.retry_after_s, else Retry-After (s).
async function retryAfterMs(r) {
  const body = await r.json().catch(() => ({}));
  const s = Number((body.error && body.error.retry_after_s) ?? r.headers.get("Retry-After"));
  return Number.isFinite(s) && s > 0 ? s * 1000 : 0;
}

Object.assign(window.RtTransport.prototype, {
  // --- long polling, and interval polling (the server's degraded rung) -----------------
  _open_long_polling(onOpen, onDown) {
    const ctl = new AbortController();
    const interval = this.transport === "polling"; // timeout=0 every pollS seconds
    let after = cursorString(this._resumeIds());
    let first = true;
    const loop = async () => {
      while (!ctl.signal.aborted) {
        const p = this._q({ timeout: first || interval ? 0 : this.pollTimeoutS });
        for (const ch of this.channels) p.append("channel", ch);
        if (after) p.set("after", after);
        let body;
        try {
          const r = await fetch(this._url("/poll", p), { signal: ctl.signal, cache: "no-store" });
          if (r.status === 401 || r.status === 403) {
            const refusal = await this._refusal(r);
            if (ctl.signal.aborted) return;
            this._gen++;
            this._conn = null;
            this._refuse(refusal);
            return;
          }
          if (r.status === 400) {
            const refusal = await this._refusal(r);
            if (refusal.code === "bad_cursor" && after) {
              // A cursor the server cannot place: start from now on, do not retry it.
              this.onerror({ type: "error", ...refusal });
              for (const ch of this.resume) delete this.ids[ch];
              after = ""; // without `after` the server answers at once, from now on
              continue;
            }
          }
          if (r.status === 429 || r.status === 503) {
            // A limit or the broker down: the next poll waits as long as the server asked.
            this._retryAfterMs = await retryAfterMs(r);
          }
          if (!r.ok) throw new Error(`HTTP ${r.status}`);
          body = await r.json();
        } catch (e) {
          if (!ctl.signal.aborted) onDown(`poll failed: ${e.message || e}`);
          return;
        }
        for (const g of body.gaps || []) this._gap(g);
        for (const m of body.messages) this._deliver(m);
        after = body.cursor;
        const all = {};
        parseCursor(after, all);
        for (const ch of this.resume) if (all[ch] !== undefined) this.ids[ch] = all[ch];
        if (first) {
          first = false;
          onOpen();
          this._pollPresence();
        }
        if (interval) {
          // Degraded: poll every pollS until an answer says the server allows more.
          // (A level still above every transport of our order keeps us polling.)
          if (body.degraded === false && this._recover({ transport: body.transport })) return;
          if (body.poll_s > 0) this.pollS = body.poll_s;
          await new Promise((ok) => setTimeout(ok, this.pollS * 1000));
        } else if (body.degraded) {
          this._degrade({ transport: "polling", poll_s: body.poll_s }); // answered at once
          return;
        } else if (this.ceiling && this._recover({ transport: body.transport })) {
          return; // the server allows a better transport again
        }
      }
    };
    loop();
    this._conn = () => ctl.abort();
  },

  _polls() {
    return this.transport === "long-polling" || this.transport === "polling";
  },

  async _pollPresence() {
    if (!this.presence || !this._polls()) return;
    const p = this._q({ channel: this.presence.channel });
    try {
      const r = await fetch(this._url("/presence", p), { cache: "no-store" });
      if (r.ok) this.onpresence(await r.json());
    } catch (e) {
      /* next round */
    }
    if (this.state === "open" && this._polls()) {
      setTimeout(() => this._pollPresence(), 3000);
    }
  },
});
