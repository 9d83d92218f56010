"""The transport model: WebSocket, SSE, long polling and polling, side by side.

``simulate_transports(TransportParams(...), seed=K)`` runs one SimPy simulation and returns
a :class:`~rtsim.core.results.RunResult`: one row per delivery and a summary (p50/p95/p99
latency, deliveries/s, bytes on the wire and HTTP requests per delivered message,
connections, server memory).

What is modelled
----------------
* Publishers emit a Poisson stream of ``rate`` messages/s, each to one of ``channels``
  channels; every client subscribes to one channel (round robin), so each message fans out
  to ``clients × tabs_per_client / channels`` subscribers.
* The server is one core (an asyncio event loop): fan-out writes and HTTP requests queue on
  it, first come first served, costing ``cpu_per_delivery_us`` per message written to one
  connection and ``cpu_per_request_us`` per HTTP request handled.
* Every client has its own :class:`~rtsim.sim.network.Link` (RTT, jitter, bandwidth, loss).
  A TCP connection delivers in order, so a retransmission delays later messages on the same
  connection too (head-of-line blocking).
* **WebSocket / SSE**: one persistent connection; a message is framed (2–14 bytes for a
  WebSocket frame, ``id:``/``data:`` lines for SSE) and written at once.
* **Long polling** (RFC 6202 §2): a request waits at the server; a message answers it at
  once; the client receives it and sends the next request. A message that arrives while the
  next request is still on its way waits for it, so its latency reaches up to three
  transits. Messages that pile up meanwhile go out together in one response. A request held
  ``hold_timeout_s`` without a message is answered empty and re-sent.
* **Polling**: each client asks every ``poll_interval_s`` and gets whatever is buffered.
* **HTTP/1.1 vs HTTP/2** (claim C5): browsers allow about 6 HTTP/1.1 connections per origin;
  an SSE stream holds its connection forever, so with more than 6 tabs per browser the
  extra tabs never connect (their messages count as lost). HTTP/2 multiplexes every tab on
  one connection and compresses headers (HPACK). The limit is modelled for SSE only.
* **Reconnects**: with ``reconnects_per_hour`` > 0, persistent connections drop at random,
  each client at that rate while it is connected (a client that is down is not hit again
  until it is back); the client waits the delay of the core
  :class:`~rtsim.core.reconnect.ReconnectPolicy` (its :class:`~rtsim.core.backoff.Backoff`,
  restarted only after ``stable_after_s`` connected, growing while it flaps), re-does the
  connection setup (TCP + TLS + HTTP/upgrade round trips) and resumes from its last id,
  so messages published meanwhile arrive late rather than never.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import simpy

from ..core.envelope import Envelope, encode
from ..core.reconnect import Lost, Opened, ReconnectPolicy, SetTimer, Start, TimerFired
from ..core.results import RunResult, Summary
from ..core.transport import (
    Transport,
    sse_event_overhead,
    ws_frame_header_len,
)
from .network import FifoCpu, fifo_constant, wire_bytes, wire_bytes_one
from .seeding import as_seed_sequence, children
from .transport_params import DEFAULTS_SOURCES, KIB, TransportParams

__all__ = ["DEFAULTS_SOURCES", "TransportParams", "simulate_transports"]


class _Model:
    """One run's state. Not reusable: make a new one per run."""

    def __init__(self, p: TransportParams, seed: np.random.SeedSequence) -> None:
        self.p = p
        # Separate streams: the same seed gives every transport the same message arrivals
        # (common random numbers), whatever else each model draws.
        arrivals, network = children(seed, 2)
        self.arrivals = np.random.default_rng(arrivals)
        self.rng = np.random.default_rng(network)
        self.env = simpy.Environment()
        self.cpu = FifoCpu()
        self.link = p.link
        self.c_d = p.cpu_per_delivery_us * 1e-6
        self.c_r = p.cpu_per_request_us * 1e-6
        self.c_c = p.cpu_client_per_delivery_us * 1e-6
        self.h2 = p.http_version == "2"
        self.slowdown = self.cpu_slowdown()
        self.c_d *= self.slowdown
        self.c_r *= self.slowdown
        self.c_c *= self.slowdown

        n = p.clients * p.tabs_per_client
        self.n = n
        self.browser = np.repeat(np.arange(p.clients), p.tabs_per_client)
        self.tab = np.tile(np.arange(p.tabs_per_client), p.clients)
        self.channel_of = np.arange(n) % p.channels
        # Under HTTP/1.1 an SSE stream holds its connection: tabs past the limit never connect.
        blocked = np.zeros(n, dtype=bool)
        if p.transport is Transport.SSE and not self.h2:
            blocked = self.tab >= p.max_h1_connections
        self.blocked = blocked
        self.members = [
            np.flatnonzero((self.channel_of == c) & ~blocked) for c in range(p.channels)
        ]
        self.blocked_members = [
            int(np.count_nonzero((self.channel_of == c) & blocked)) for c in range(p.channels)
        ]

        self.n_proc = p.client_processes
        # While the server's single core is busy, the client processes share what is left:
        # P of them on cores − 1 cores each run at speed (cores − 1) / P (at most 1).
        self.client_speed_busy = 1.0
        if math.isfinite(p.cores) and p.client_processes > 0:
            self.client_speed_busy = min(1.0, max(0.05, p.cores - 1) / p.client_processes)
        self.proc_of = np.arange(n) % max(1, self.n_proc)
        self.client_free = np.zeros(max(1, self.n_proc))

        # Per-subscriber state.
        self.last_rx = np.zeros(n)  # in-order delivery on one TCP connection
        self.down_until = np.zeros(n)  # reconnecting until then (persistent transports)
        self.policies: dict[int, ReconnectPolicy] = {}  # of clients that dropped, by index
        self.waiting = np.zeros(n, dtype=bool)  # long polling: a request is held at the server
        self.req_gen = np.zeros(n, dtype=np.int64)  # long polling: to ignore stale hold timers
        self.buffers: list[list[int]] = [[] for _ in range(n)]

        # Messages.
        self.msg_time: list[float] = []
        self.msg_channel: list[int] = []
        self.expected = 0
        self.lost = 0

        # Output chunks.
        self.out_client: list[np.ndarray] = []
        self.out_msg: list[np.ndarray] = []
        self.out_rx: list[np.ndarray] = []
        # Single deliveries (the per-request path) as plain lists: cheaper than tiny arrays.
        self.one_client: list[int] = []
        self.one_msg: list[int] = []
        self.one_rx: list[float] = []

        # Counters.
        self.wire = 0.0
        self.requests = 0
        self.empty_responses = 0
        self.reconnects = 0

        # Framing sizes, from the core's own encoders.
        sample = Envelope(channel="c0", id="1000000", data="x" * p.payload_bytes, ts=0.0)
        self.envelope_bytes = len(encode(sample)) - 2  # data is a JSON string: drop quotes
        self.setup_rtts = 3 if p.tls else 2

    # --- helpers ---------------------------------------------------------------------------
    def cpu_slowdown(self) -> float:
        """Stretch of every CPU cost when server + clients want more than ``cores``."""
        p = self.p
        if not math.isfinite(p.cores):
            return 1.0
        deliveries_per_s = p.rate * p.clients * p.tabs_per_client / p.channels
        demand = deliveries_per_s * (self.c_d + (self.c_c if p.client_processes else 0.0))
        if p.transport is Transport.LONG_POLLING:
            demand += deliveries_per_s * self.c_r  # about one request per message
        elif p.transport is Transport.POLLING:
            demand += p.clients * p.tabs_per_client / p.poll_interval_s * self.c_r
        return max(1.0, demand / p.cores)

    def client_cpu(self, clients: np.ndarray, rx: np.ndarray) -> np.ndarray:
        """When each client process has handled what arrived at ``rx`` (FIFO per process)."""
        if self.n_proc == 0 or len(rx) == 0:
            return rx
        out = np.empty_like(rx)
        procs = self.proc_of[clients]
        speed, busy = self.client_speed_busy, self.cpu.free_at
        for q in range(self.n_proc):
            sel = np.flatnonzero(procs == q)
            if len(sel) == 0:
                continue
            order = sel[np.argsort(rx[sel], kind="stable")]
            # Slow while the server is busy; work left after that runs at full speed.
            done = fifo_constant(rx[order], self.c_c / speed, float(self.client_free[q]))
            late = done > busy
            done[late] = np.maximum(busy + (done[late] - busy) * speed, rx[order][late] + self.c_c)
            self.client_free[q] = done[-1]
            out[order] = done
        return out

    def client_one(self, k: int, rx: float, messages: int) -> float:
        """:meth:`client_cpu` for one response carrying ``messages`` messages."""
        if self.n_proc == 0:
            return rx
        q = int(self.proc_of[k])
        speed, busy = self.client_speed_busy, self.cpu.free_at
        start = max(rx, float(self.client_free[q]))
        work = self.c_c * max(1, messages)
        if start >= busy:
            done = start + work  # the server is idle: full speed
        else:
            done = start + work / speed  # slowed while the server is busy ...
            if done > busy:
                done = busy + (done - busy) * speed  # ... and full speed after
        self.client_free[q] = done
        return done

    def at(self, t: float, fn: Any, *args: Any) -> None:
        ev = self.env.timeout(max(0.0, t - self.env.now))
        ev.callbacks.append(lambda _e: fn(*args))

    def record(self, clients: np.ndarray, msgs: np.ndarray, rx: np.ndarray) -> None:
        self.out_client.append(clients)
        self.out_msg.append(msgs)
        self.out_rx.append(rx)

    def persistent_frame_bytes(self) -> int:
        env = self.envelope_bytes
        if self.p.transport is Transport.WEBSOCKET:
            return env + ws_frame_header_len(env)
        event = env + sse_event_overhead(len("1000000"))
        if self.h2:
            return event + 9  # HTTP/2 DATA frame header
        return event + len(f"{event:x}") + 4  # HTTP/1.1 chunk: size line + CRLFs

    def poll_response_bytes(self, k: int) -> int:
        """App bytes of a (long-)poll response carrying ``k`` messages."""
        body = len('{"messages":[],"cursor":"1000000"}') + k * (self.envelope_bytes + 1)
        headers = 20 + 9 if self.h2 else self.p.response_header_bytes
        return headers + body

    def request_bytes(self) -> int:
        return 40 + 9 if self.h2 else self.p.request_header_bytes

    # --- processes ---------------------------------------------------------------------------
    def publisher(self) -> Any:
        p = self.p
        while True:
            if p.arrivals == "constant":
                yield self.env.timeout(1.0 / p.rate)
            else:
                yield self.env.timeout(float(self.arrivals.exponential(1.0 / p.rate)))
            if self.env.now >= p.duration_s:
                return
            ch = int(self.arrivals.integers(p.channels))
            mid = len(self.msg_time)
            self.msg_time.append(self.env.now)
            self.msg_channel.append(ch)
            self.expected += len(self.members[ch]) + self.blocked_members[ch]
            self.lost += self.blocked_members[ch]
            if p.transport.persistent:
                self.fan_out_persistent(mid, ch)
            elif p.transport is Transport.LONG_POLLING:
                self.fan_out_long_poll(mid, ch)
            else:
                for k in self.members[ch].tolist():
                    self.buffers[k].append(mid)

    def fan_out_persistent(self, mid: int, ch: int) -> None:
        idx = self.members[ch]
        n = len(idx)
        if n == 0:
            return
        now = self.env.now
        start = self.cpu.start_time(now)
        self.cpu.submit(now, n * self.c_d)
        write = start + self.c_d * np.arange(1, n + 1)
        frame = self.persistent_frame_bytes()
        transit = self.link.transit(self.rng, frame, n)
        rx = np.maximum(write, self.down_until[idx]) + transit
        rx = np.maximum(rx, self.last_rx[idx])
        self.last_rx[idx] = rx
        self.wire += float(wire_bytes(frame, tls=self.p.tls)) * n
        self.record(idx, np.full(n, mid), self.client_cpu(idx, rx))

    def fan_out_long_poll(self, mid: int, ch: int) -> None:
        idx = self.members[ch]
        if len(idx) == 0:
            return
        ready = idx[self.waiting[idx]]
        for k in idx[~self.waiting[idx]].tolist():
            self.buffers[k].append(mid)
        if len(ready) == 0:
            return
        now = self.env.now
        start = self.cpu.start_time(now)
        self.cpu.submit(now, len(ready) * self.c_d)
        write = start + self.c_d * np.arange(1, len(ready) + 1)
        self.respond(ready, write, [[mid]] * len(ready))

    def respond(self, clients: np.ndarray, write: np.ndarray, batches: list[list[int]]) -> None:
        """Send (long-)poll responses; for long polling, schedule each client's next request."""
        sizes = np.array([self.poll_response_bytes(len(b)) for b in batches])
        transit = self.link.transit(self.rng, sizes, len(clients))
        rx = np.maximum(write + transit, self.last_rx[clients])
        self.last_rx[clients] = rx
        if self.n_proc:
            order = np.argsort(rx, kind="stable")
            done = rx.copy()
            for i in order.tolist():
                done[i] = self.client_one(int(clients[i]), float(rx[i]), len(batches[i]))
            rx = done
        self.wire += float(wire_bytes(sizes, tls=self.p.tls).sum())
        if self.p.transport is Transport.LONG_POLLING:
            self.waiting[clients] = False
            up = self.link.transit(self.rng, self.request_bytes(), len(clients))
            for k, t in zip(clients.tolist(), (rx + up).tolist(), strict=True):
                self.at(t, self.long_poll_request, k)
        lens = [len(b) for b in batches]
        if sum(lens):
            self.record(
                np.repeat(clients, lens),
                np.concatenate([np.asarray(b, dtype=np.int64) for b in batches if b]),
                np.repeat(rx, lens),
            )
        self.empty_responses += lens.count(0)

    def respond_one(self, k: int, write: float, batch: list[int]) -> None:
        """:meth:`respond` for one client, on plain floats (the per-request hot path)."""
        size = self.poll_response_bytes(len(batch))
        rx = max(write + self.link.transit_one(self.rng, size), float(self.last_rx[k]))
        self.last_rx[k] = rx
        rx = self.client_one(k, rx, len(batch))
        self.wire += wire_bytes_one(size, tls=self.p.tls)
        if self.p.transport is Transport.LONG_POLLING:
            self.waiting[k] = False
            up = self.link.transit_one(self.rng, self.request_bytes())
            self.at(rx + up, self.long_poll_request, k)
        if batch:
            self.one_client.extend([k] * len(batch))
            self.one_msg.extend(batch)
            self.one_rx.extend([rx] * len(batch))
        else:
            self.empty_responses += 1

    def long_poll_request(self, k: int) -> None:
        now = self.env.now
        self.requests += 1
        self.wire += wire_bytes_one(self.request_bytes(), tls=self.p.tls)
        buf = self.buffers[k]
        done = self.cpu.submit(now, self.c_r + len(buf) * self.c_d)
        if buf:
            self.buffers[k] = []
            self.respond_one(k, done, buf)
        else:
            self.waiting[k] = True
            self.req_gen[k] += 1
            self.at(done + self.p.hold_timeout_s, self.hold_timeout, k, int(self.req_gen[k]))

    def hold_timeout(self, k: int, gen: int) -> None:
        if self.waiting[k] and self.req_gen[k] == gen:
            done = self.cpu.submit(self.env.now, self.c_d)
            self.respond_one(k, done, [])

    def poller(self, k: int, send_at: float) -> None:
        """Client ``k`` sent a poll at ``send_at``; it arrives now."""
        now = self.env.now
        self.requests += 1
        self.wire += wire_bytes_one(self.request_bytes(), tls=self.p.tls)
        buf = self.buffers[k]
        self.buffers[k] = []
        done = self.cpu.submit(now, self.c_r + len(buf) * self.c_d)
        self.respond_one(k, done, buf)
        nxt = send_at + self.p.poll_interval_s
        if nxt < self.horizon:
            up = self.link.transit_one(self.rng, self.request_bytes())
            self.at(nxt + up, self.poller, k, nxt)

    def drops(self) -> Any:
        """Random connection drops of persistent transports, then backoff + setup.

        Only a connected client drops: each one at ``reconnects_per_hour`` / 3600 per second
        while it is up (Poisson thinning: candidates arrive at that rate times the number of
        subscribers, and one that is blocked or still reconnecting is skipped). A client is
        therefore up for an exponential time of mean 1 / rate, then down for the backoff
        delay plus the connection setup, and so on: about ``duration / (1 / rate + mean
        downtime)`` reconnects per client, never stacked downtimes. The delay comes from the
        client's core reconnect policy: a client dropped again within ``stable_after_s`` of
        reconnecting has flapped, and its next delay's ceiling doubles (up to the cap).
        """
        p = self.p
        total_rate = p.reconnects_per_hour / 3600.0 * self.n
        while True:
            yield self.env.timeout(float(self.rng.exponential(1.0 / total_rate)))
            if self.env.now >= p.duration_s:
                return
            k = int(self.rng.integers(self.n))
            if self.blocked[k] or self.env.now < self.down_until[k]:
                continue  # never connected, or already down: nothing to drop
            self.reconnects += 1
            now = self.env.now
            policy = self._policy(k)
            (timer,) = [a for a in policy.handle(Lost(), now) if isinstance(a, SetTimer)]
            setup = float(self.link.transit(self.rng, 0, 2 * self.setup_rtts).sum())
            self.down_until[k] = now + timer.delay + setup
            # Sans-I/O: the policy takes the (future) times of the retry and the open now.
            policy.handle(TimerFired(), timer.at)
            policy.handle(Opened(), self.down_until[k])
            handshake = 2 * 600 + (4000 if p.tls else 0)  # HTTP + TLS handshake bytes, approx.
            self.wire += float(wire_bytes(handshake, tls=False))

    def _policy(self, k: int) -> ReconnectPolicy:
        """Client ``k``'s reconnect policy, open (and stable) since before t = 0."""
        policy = self.policies.get(k)
        if policy is None:
            policy = ReconnectPolicy(
                rng=self.rng,  # the model's stream, as the backoff draws always were
                cascade=(self.p.transport,),
                backoff=self.p.backoff,
                stable_after_s=self.p.stable_after_s,
            )
            t0 = -self.p.stable_after_s
            policy.handle(Start(), t0)
            policy.handle(Opened(), t0)
            self.policies[k] = policy
        return policy

    # --- run ---------------------------------------------------------------------------------
    def run(self) -> RunResult:
        p = self.p
        # Drain: let in-flight messages arrive after publishing stops.
        drain = p.rtt_ms / 1000 * 4 + 1.0
        if p.transport is Transport.POLLING:
            drain += p.poll_interval_s
        if p.reconnects_per_hour > 0:
            drain += p.backoff.cap_s
        self.horizon = p.duration_s + drain
        self.env.process(self.publisher())
        if p.reconnects_per_hour > 0 and p.transport.persistent:
            self.env.process(self.drops())
        if p.transport is Transport.LONG_POLLING:
            # Steady state: every client starts with a request waiting at the server.
            self.waiting[~self.blocked] = True
            for k in np.flatnonzero(~self.blocked).tolist():
                self.at(p.hold_timeout_s, self.hold_timeout, k, 0)
        elif p.transport is Transport.POLLING:
            phase = self.rng.uniform(0, p.poll_interval_s, self.n)
            up = self.link.transit(self.rng, self.request_bytes(), self.n)
            for k in np.flatnonzero(~self.blocked).tolist():
                self.at(phase[k] + up[k], self.poller, k, float(phase[k]))
        self.env.run(until=self.horizon)
        return self.result()

    def result(self) -> RunResult:
        p = self.p
        client = np.concatenate(
            [*self.out_client, np.asarray(self.one_client, dtype=np.int64)]
        ).astype(np.int64)
        msg = np.concatenate([*self.out_msg, np.asarray(self.one_msg, dtype=np.int64)]).astype(
            np.int64
        )
        rx = np.concatenate([*self.out_rx, np.asarray(self.one_rx, dtype=float)])
        msg_time = np.asarray(self.msg_time)
        msg_channel = np.asarray(self.msg_channel, dtype=np.int64)
        pub = msg_time[msg] if len(msg) else np.zeros(0)
        latency_ms = (rx - pub) * 1000.0
        deliveries = pd.DataFrame(
            {
                "channel": pd.Categorical.from_codes(
                    msg_channel[msg] if len(msg) else np.zeros(0, dtype=np.int64),
                    categories=pd.Index([f"c{c}" for c in range(p.channels)]),
                ),
                "message_id": msg,
                "client": client,
                "transport": pd.Categorical.from_codes(
                    np.zeros(len(msg), dtype=np.int8), categories=pd.Index([p.transport.value])
                ),
                "publish_time": pub,
                "receive_time": rx,
                "latency_ms": latency_ms,
            }
        )
        undelivered = self.expected - self.lost - len(msg)
        if p.transport.persistent:
            connections = p.clients if self.h2 else int(np.count_nonzero(~self.blocked))
        else:
            connections = p.clients if self.h2 else self.n
        extra = {
            "transport": p.transport.value,
            "messages_published": len(self.msg_time),
            "expected_deliveries": self.expected,
            "undelivered_at_end": undelivered,
            "empty_responses": self.empty_responses,
            "reconnects": self.reconnects,
            "server_cpu_utilisation": self.cpu.busy_s / self.horizon,
            "setup_ms": self.setup_rtts * p.rtt_ms,
            "tabs_blocked": int(np.count_nonzero(self.blocked)),
            "cpu_slowdown": self.slowdown,
        }
        summary = Summary.from_latencies(
            latency_ms,
            duration_s=p.duration_s,
            wire_bytes=self.wire,
            requests=self.requests,
            connections=connections,
            server_memory_bytes=connections * p.conn_memory_kib * KIB,
            lost=self.lost + undelivered,
            extra=extra,
        )
        return RunResult(params=p.as_dict(), deliveries=deliveries, summary=summary)


def simulate_transports(
    params: TransportParams, seed: int | np.random.SeedSequence = 0
) -> RunResult:
    """Run the transport model once; the same ``params`` and ``seed`` give the same result."""
    if not isinstance(params, TransportParams):
        raise ValueError(f"params must be TransportParams, got {type(params).__name__}")
    return _Model(params, as_seed_sequence(seed)).run()
