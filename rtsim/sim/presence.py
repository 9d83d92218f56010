"""The presence model: heartbeats and TTLs, throttled cursors, and where presence is stored.

``simulate_presence(PresenceParams(...), seed=K)`` returns a
:class:`~rtsim.core.results.RunResult` whose summary holds, among others,
``server_msgs_per_s``, ``per_client_msgs_per_s``, ``detection_delay_p50_s``,
``detection_delay_p99_s`` and ``false_offline_per_hour``. Its frame has one row per
presence event the server broadcast (join, leave, expiry), with the detection delay of
real departures and a flag for false "offline" events.

What is modelled
----------------
* **Membership** (claim C17), a SimPy model driving the core
  :class:`~rtsim.core.presence.PresenceTracker` unchanged: ``resources`` resources with
  ``viewers`` slots each, all filled at t = 0. A viewer stays an exponential
  ``session_mean_s`` and then leaves cleanly (a goodbye message) or, with probability
  ``crash_fraction``, crashes (silence); a new viewer takes the slot at once. Every viewer
  sends a heartbeat every ``heartbeat_s`` (random phase). A message (heartbeat or goodbye)
  is lost with probability ``loss`` (the connection under it broke: a radio hand-over, a
  proxy reset); the others cross a :class:`~rtsim.sim.network.Link` (RTT, exponential
  jitter) in order. The server expires a viewer ``timeout_s`` after the last message it got
  from it, firing the tracker's timer request exactly. A departure's *detection delay* is
  the time from the real departure to the server's Leave event; an expiry of a viewer that
  is still there is a *false offline* (it comes back at its next heartbeat: a flicker).
* **Cursors** (claim C16): every viewer moves its cursor all the time and samples it at
  ``cursor_hz``; the client's core :class:`~rtsim.core.presence.Throttle` sends at most
  ``throttle_hz`` (0 = no throttle) and the server fans each update out to the other
  ``viewers − 1`` viewers of the resource. With a steady stream the throttle sends exactly
  every ``1 / min(cursor_hz, throttle_hz)`` s, so the counts are computed in closed form
  for every viewer (tests check the closed form against the core throttle), while a sample
  of ``cursor_pairs`` sender→receiver pairs runs the core throttle on a smooth random cursor
  path and measures what the receiver draws at ``render_fps``: the latest position
  (*snap*) or a linear interpolation one update interval in the past (*interpolated*).
  Cursor traffic assumes every slot is always occupied (churn is ignored for cursors).
* **Load**: server messages in and out per second, per client, bytes on the wire (each
  message is one WebSocket frame in its own TLS record and TCP segment) and server CPU at
  ``cpu_per_message_us`` per message.
* **Storage** (claim C18): the write load of keeping presence in a database table (every
  heartbeat an ``UPDATE``, joins ``INSERT``, leaves and expiries ``DELETE``, each its own
  commit; cursors too if they were stored) vs a TTL key store (``SET key EX`` per
  heartbeat, expiry free), as a fraction of the capacity measured on this machine by
  ``benchmarks/bench_presence_store.py``.

The parameters, with their bounds, units and sources, are in
:mod:`rtsim.sim.presence_params`; :class:`PresenceParams` and :data:`DEFAULTS_SOURCES` are
importable from here too.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import simpy
from scipy.signal import lfilter

from ..core.presence import Event, Join, Leave, LeaveReason, PresenceTracker, Throttle, Update
from ..core.results import RunResult, Summary, percentile
from ..core.transport import ws_frame_header_len
from .network import wire_bytes
from .presence_params import DEFAULTS_SOURCES, PresenceParams
from .seeding import children

__all__ = [
    "DEFAULTS_SOURCES",
    "PresenceParams",
    "cursor_emission_counts",
    "cursor_emission_counts_core",
    "exact_cursor_msgs_per_s",
    "simulate_presence",
    "store_write_load",
]


def exact_cursor_msgs_per_s(p: PresenceParams) -> float:
    """The exact server fan-out rate for cursors: resources × viewers × (viewers − 1) × rate."""
    return p.resources * p.viewers * (p.viewers - 1) * p.cursor_rate_hz


def cursor_emission_counts(
    phase: np.ndarray, cursor_hz: float, throttle_hz: float, duration_s: float
) -> np.ndarray:
    """Updates each client's throttle sends in [0, duration) for a steady stream.

    A client samples at ``phase / cursor_hz + k / cursor_hz`` (``phase`` in [0, 1)); driven
    at its timer requests, :class:`~rtsim.core.presence.Throttle` then sends at the first
    sample and every ``1 / min(cursor_hz, throttle_hz)`` s after it.
    """
    if cursor_hz == 0:
        return np.zeros(len(phase), dtype=np.int64)
    rate = cursor_hz if throttle_hz == 0 else min(cursor_hz, throttle_hz)
    first = np.asarray(phase, dtype=float) / cursor_hz
    counts = np.ceil((duration_s - first) * rate - 1e-9)
    return np.maximum(counts, 0).astype(np.int64)


def cursor_emission_counts_core(
    phase: np.ndarray, cursor_hz: float, throttle_hz: float, duration_s: float
) -> np.ndarray:
    """The same counts as :func:`cursor_emission_counts`, by driving the core throttle.

    One :class:`~rtsim.core.presence.Throttle` keyed by client gets every client's samples in
    time order and is flushed at each of its timer requests, as the live client does. It
    costs a Python call per sample: use it to check the closed form, or for small runs.
    """
    n = len(phase)
    if cursor_hz == 0 or n == 0:
        return np.zeros(n, dtype=np.int64)
    first = np.asarray(phase, dtype=float) / cursor_hz
    per = math.ceil(duration_s * cursor_hz) + 1
    times = first[:, None] + np.arange(per)[None, :] / cursor_hz
    client = np.broadcast_to(np.arange(n)[:, None], times.shape)
    keep = times < duration_s
    t_flat, c_flat = times[keep], client[keep]
    order = np.argsort(t_flat, kind="stable")
    th: Throttle[int, None] = Throttle(throttle_hz if throttle_hz > 0 else math.inf)
    counts = np.zeros(n, dtype=np.int64)
    for t, c in zip(t_flat[order].tolist(), c_flat[order].tolist(), strict=True):
        while (d := th.next_flush()) is not None and d <= t:
            for e in th.flush(d):
                counts[e.key] += 1
        for e in th.offer(c, None, t):
            counts[e.key] += 1
    while (d := th.next_flush()) is not None and d < duration_s:
        for e in th.flush(d):
            counts[e.key] += 1
    return counts


def store_write_load(
    *,
    heartbeats_per_s: float,
    joins_per_s: float,
    leaves_per_s: float,
    expiries_per_s: float,
    cursor_updates_per_s: float,
    db_commits_per_s: float,
    ttl_ops_per_s: float,
) -> dict[str, float]:
    """Writes per second of presence kept in a database table vs in TTL keys (claim C18).

    Database: a heartbeat is ``UPDATE presence SET last_seen = now()``, a join an
    ``INSERT``, a goodbye or an expiry (found by a periodic sweep) a ``DELETE``; each its own
    transaction, so one WAL flush each, and every ``UPDATE``/``DELETE`` leaves a dead row
    version for vacuum. With cursors stored as well, each cursor update is an ``UPDATE`` too.
    TTL store: a heartbeat or join is ``SET key value EX timeout``, a goodbye ``DEL``; expiry
    costs nothing (the store does it), and cursors go over pub/sub, not to storage.
    """
    db = heartbeats_per_s + joins_per_s + leaves_per_s + expiries_per_s
    db_cursors = db + cursor_updates_per_s
    ttl = heartbeats_per_s + joins_per_s + leaves_per_s
    return {
        "db_writes_per_s": db,
        "db_writes_with_cursors_per_s": db_cursors,
        "db_dead_rows_per_s": heartbeats_per_s + leaves_per_s + expiries_per_s,
        "db_utilisation": db / db_commits_per_s,
        "db_utilisation_with_cursors": db_cursors / db_commits_per_s,
        "ttl_ops_per_s": ttl,
        "ttl_utilisation": ttl / ttl_ops_per_s,
    }


# --- the membership model (SimPy driving the core tracker) ------------------------------------
class _Membership:
    """One run's membership state. Not reusable: make a new one per run."""

    def __init__(self, p: PresenceParams, rng: np.random.Generator) -> None:
        self.p = p
        self.rng = rng
        self.env = simpy.Environment()
        self.tracker = PresenceTracker(p.timeout_s)
        self.link = p.link
        self.armed: float | None = None
        self.next_id = 0
        # Per client: resource, departed-at (nan while here), crash flag, handled flag.
        self.resource_of: dict[str, str] = {}
        self.departed_at: dict[str, float] = {}
        self.crashed: dict[str, bool] = {}
        self.settled: set[str] = set()  # departures whose Leave has been counted
        self.alive_s = 0.0
        # Counters.
        self.msgs_in = 0
        self.msgs_out = 0
        self.bytes_in = 0.0
        self.bytes_out = 0.0
        self.heartbeats = 0
        self.joins = 0
        self.goodbyes = 0
        self.expiries = 0
        self.rejoins = 0
        self.false_offline = 0
        self.already_offline = 0
        self.rows: list[tuple[str, str, str, float, float, float, bool]] = []
        self.expired_once: set[str] = set()  # clients that have expired at least once
        hb, ev = p.heartbeat_bytes, p.member_event_bytes
        self.hb_wire = float(wire_bytes(hb + ws_frame_header_len(hb, masked=True), tls=True))
        self.ev_wire_up = float(wire_bytes(ev + ws_frame_header_len(ev, masked=True), tls=True))
        self.ev_wire_down = float(wire_bytes(ev + ws_frame_header_len(ev), tls=True))

    # --- scheduling helpers ----------------------------------------------------------------
    def at(self, t: float, fn: Any, *args: Any) -> None:
        ev = self.env.timeout(max(0.0, t - self.env.now))
        ev.callbacks.append(lambda _e: fn(*args))

    def arm(self) -> None:
        """Honour the tracker's timer request (a timer never needs to move earlier)."""
        d = self.tracker.next_deadline()
        if d is not None and (self.armed is None or d < self.armed):
            self.armed = d
            self.at(d, self.fire)

    def fire(self) -> None:
        self.armed = None
        self.broadcast(self.tracker.expire(self.env.now))
        self.arm()

    # --- clients ---------------------------------------------------------------------------
    def start_client(self, resource: str, warm: bool) -> None:
        p, now = self.p, self.env.now
        cid = f"u{self.next_id}"
        self.next_id += 1
        self.resource_of[cid] = resource
        life = float(self.rng.exponential(p.session_mean_s))
        end = now + life
        crash = bool(self.rng.random() < p.crash_fraction)
        if warm:  # present before the run starts: no join traffic counted
            self.tracker.join(resource, cid, now=now)
            self.arm()
            last_rx = now
        else:
            up = float(self.link.transit(self.rng, p.member_event_bytes, 1)[0])
            last_rx = now + up
            self.at(last_rx, self.arrive_join, cid)
        # Heartbeats: every heartbeat_s from a random phase, until the session ends.
        phase = float(self.rng.uniform(0, p.heartbeat_s))
        horizon = min(end, p.duration_s)
        sends = np.arange(now + phase, horizon, p.heartbeat_s)
        kept = sends[self.rng.random(len(sends)) >= p.loss]
        rx = kept + self.link.transit(self.rng, p.heartbeat_bytes, len(kept))
        rx = np.maximum.accumulate(np.maximum(rx, last_rx)) if len(rx) else rx
        for t in rx.tolist():
            self.at(t, self.arrive_heartbeat, cid)
        if end < p.duration_s:
            last = float(rx[-1]) if len(rx) else last_rx
            self.at(end, self.depart, cid, crash, last)
        self.alive_s += min(end, p.duration_s) - now

    def arrive_join(self, cid: str) -> None:
        self.count_in(self.ev_wire_up)
        self.joins += 1
        self.broadcast(self.tracker.join(self.resource_of[cid], cid, now=self.env.now))
        self.arm()

    def arrive_heartbeat(self, cid: str) -> None:
        self.count_in(self.hb_wire)
        self.heartbeats += 1
        self.broadcast(self.tracker.heartbeat(self.resource_of[cid], cid, now=self.env.now))
        self.arm()

    def arrive_goodbye(self, cid: str) -> None:
        self.count_in(self.ev_wire_up)
        self.goodbyes += 1
        self.broadcast(self.tracker.leave(self.resource_of[cid], cid, now=self.env.now))

    def depart(self, cid: str, crash: bool, last_rx: float) -> None:
        p, now = self.p, self.env.now
        resource = self.resource_of[cid]
        self.departed_at[cid] = now
        self.crashed[cid] = crash
        if self.tracker.deadline(resource, cid) is None and now >= last_rx:
            self.already_offline += 1  # falsely expired and never came back before leaving
            self.settled.add(cid)
        if not crash and self.rng.random() >= p.loss:
            up = float(self.link.transit(self.rng, p.member_event_bytes, 1)[0])
            self.at(max(now + up, last_rx), self.arrive_goodbye, cid)
        self.start_client(resource, warm=False)  # a new viewer takes the slot

    # --- the server's side -----------------------------------------------------------------
    def count_in(self, wire: float) -> None:
        self.msgs_in += 1
        self.bytes_in += wire

    def broadcast(self, events: list[Event]) -> None:
        now = self.env.now
        for ev in events:
            others = self.tracker.count(ev.resource)
            if isinstance(ev, Join):
                others -= 1
                # The joiner gets the snapshot: one message listing every member.
                self.msgs_out += 1
                self.bytes_out += float(
                    wire_bytes(self.p.member_event_bytes * (others + 1) + 4, tls=True)
                )
                kind = "rejoin" if ev.client in self.expired_once else "join"
                self.rejoins += kind == "rejoin"
                self.rows.append((ev.resource, ev.client, kind, math.nan, now, 0.0, False))
            elif isinstance(ev, Update):
                others -= 1
            self.msgs_out += others
            self.bytes_out += others * self.ev_wire_down
            if isinstance(ev, Leave):
                self.on_leave(ev, now)

    def on_leave(self, ev: Leave, now: float) -> None:
        cid = ev.client
        expired = ev.reason is LeaveReason.EXPIRED
        if expired:
            self.expiries += 1
            self.expired_once.add(cid)
        gone = self.departed_at.get(cid)
        kind = "expired" if expired else "left"
        if gone is None:
            if expired:
                self.false_offline += 1
                self.rows.append((ev.resource, cid, "false_offline", math.nan, now, 0.0, True))
            return
        if cid in self.settled:
            return
        self.settled.add(cid)
        crash = "crash" if self.crashed[cid] else "clean"
        self.rows.append((ev.resource, cid, f"{kind}:{crash}", gone, now, now - gone, False))

    def run(self) -> None:
        for r in range(self.p.resources):
            for _ in range(self.p.viewers):
                self.start_client(f"doc{r}", warm=True)
        self.env.run(until=self.p.duration_s)


# --- cursors -----------------------------------------------------------------------------------
def _cursor_path(
    rng: np.random.Generator, duration_s: float, dt: float, speed: float
) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random pointer path: Ornstein–Uhlenbeck velocity (τ = 0.5 s), RMS ``speed``."""
    n = math.ceil(duration_s / dt) + 2
    tau = 0.5
    a = math.exp(-dt / tau)
    sd = speed / math.sqrt(2)  # per axis
    noise = rng.standard_normal((2, n)) * sd * math.sqrt(1 - a * a)
    noise[:, 0] = rng.standard_normal(2) * sd  # start in the stationary distribution
    v = lfilter([1.0], [1.0, -a], noise, axis=1)
    xy = np.cumsum(v, axis=1) * dt
    t = np.arange(n) * dt
    return t, xy


def _cursor_pair(p: PresenceParams, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One sender→receiver pair: the core throttle, the link, and what the receiver draws."""
    w = min(p.cursor_window_s, p.duration_s)
    t_path, xy = _cursor_path(rng, w + 1.0, 1 / 480, p.cursor_speed_px_s)
    phase = float(rng.uniform(0, 1 / p.cursor_hz))
    offers = np.arange(phase, w, 1 / p.cursor_hz)
    th: Throttle[int, int] = Throttle(p.throttle_hz if p.throttle_hz > 0 else math.inf)
    sent_t: list[float] = []
    sent_k: list[int] = []
    for k, t in enumerate(offers.tolist()):
        while (d := th.next_flush()) is not None and d <= t:
            for e in th.flush(d):
                sent_t.append(e.at)
                sent_k.append(e.value)
        for e in th.offer(0, k, t):
            sent_t.append(e.at)
            sent_k.append(e.value)
    st = np.asarray(sent_t)
    sx = np.stack([np.interp(offers[sent_k], t_path, xy[i]) for i in range(2)])
    link = p.link
    # Server relay: up then down, in order on each connection.
    transit = link.transit(rng, p.cursor_bytes, len(st)) + link.transit(
        rng, p.cursor_bytes, len(st)
    )
    arrive = np.maximum.accumulate(st + transit)
    rate = p.cursor_rate_hz
    mean_transit = link.rtt_s + 2 * link.jitter_s
    delay = mean_transit + 1 / rate + 2 * link.jitter_s
    frames = np.arange(min(2.0, w / 2) + delay, w, 1 / p.render_fps)
    idx = np.searchsorted(arrive, frames, side="right") - 1
    ok = idx >= 0
    frames, idx = frames[ok], idx[ok]
    truth_now = np.stack([np.interp(frames, t_path, xy[i]) for i in range(2)])
    snap = sx[:, idx]
    # Interpolated: draw the position at render time tau = now - delay, from arrived samples.
    tau = frames - delay
    j = np.minimum(np.searchsorted(st, tau, side="right") - 1, idx)
    j = np.maximum(j, 0)
    j1 = np.minimum(j + 1, idx)
    span = st[j1] - st[j]
    frac = np.where(span > 0, np.clip((tau - st[j]) / np.where(span > 0, span, 1), 0, 1), 0)
    interp = sx[:, j] + (sx[:, j1] - sx[:, j]) * frac
    truth_tau = np.stack([np.interp(tau, t_path, xy[i]) for i in range(2)])
    truth_snap = np.stack([np.interp(frames - mean_transit, t_path, xy[i]) for i in range(2)])
    return {
        "interp_shape": np.hypot(*(interp - truth_tau)),
        "interp_now": np.hypot(*(interp - truth_now)),
        "snap_shape": np.hypot(*(snap - truth_snap)),
        "snap_now": np.hypot(*(snap - truth_now)),
        "snap_jump": _moves(snap),
        "interp_jump": _moves(interp),
        "delay": np.array([delay]),
        "sent": np.array([len(st)]),
        "window": np.array([offers[-1] - offers[0] if len(offers) else 0.0]),
    }


def _moves(xy: np.ndarray) -> np.ndarray:
    """How far the drawn cursor moves between frames, for the frames where it moves."""
    step = np.hypot(*np.diff(xy, axis=1))
    moved: np.ndarray = step[step > 1e-9]
    return moved


def _pct(x: np.ndarray, q: float) -> float:
    """Percentile of a delay (s) or a cursor error (px), at 1e-6 resolution (HdrHistogram)."""
    return percentile(x, q, resolution=1e-6)


# --- the run -----------------------------------------------------------------------------------
def simulate_presence(params: PresenceParams, seed: int | np.random.SeedSequence = 0) -> RunResult:
    """Run the presence model once; the same ``params`` and ``seed`` give the same result."""
    if not isinstance(params, PresenceParams):
        raise ValueError(f"params must be PresenceParams, got {type(params).__name__}")
    p = params
    # children() is stateless: the same seed object always gives the same streams.
    s_members, s_cursors, s_pairs = children(seed, 3)
    m = _Membership(p, np.random.default_rng(s_members))
    m.run()
    d = p.duration_s
    clients = p.viewers * p.resources

    # Cursors: closed-form counts for every viewer (checked against the core throttle).
    phase = np.random.default_rng(s_cursors).uniform(0, 1, clients)
    count_fn = cursor_emission_counts_core if p.cursor_engine == "core" else cursor_emission_counts
    counts = count_fn(phase, p.cursor_hz, p.throttle_hz, d)
    cursor_in = int(counts.sum())
    cursor_out = cursor_in * (p.viewers - 1)
    cb = p.cursor_bytes
    cur_up = float(wire_bytes(cb + ws_frame_header_len(cb, masked=True), tls=True))
    cur_down = float(wire_bytes(cb + ws_frame_header_len(cb), tls=True))

    pair: dict[str, np.ndarray] = {}
    if p.cursor_hz > 0 and p.cursor_pairs > 0 and p.viewers > 1:
        rng = np.random.default_rng(s_pairs)
        parts = [_cursor_pair(p, rng) for _ in range(p.cursor_pairs)]
        pair = {k: np.concatenate([x[k] for x in parts]) for k in parts[0]}

    msgs_in = m.msgs_in + cursor_in
    msgs_out = m.msgs_out + cursor_out
    bytes_in = m.bytes_in + cursor_in * cur_up
    bytes_out = m.bytes_out + cursor_out * cur_down
    frame = pd.DataFrame(
        m.rows,
        columns=pd.Index(
            ["resource", "client", "kind", "departed_at", "detected_at", "delay_s", "false"]
        ),
    )
    delays = frame.loc[frame["departed_at"].notna(), "delay_s"].to_numpy(dtype=float)
    crash_delays = frame.loc[frame["kind"].str.endswith(":crash"), "delay_s"].to_numpy(float)
    clean_delays = frame.loc[frame["kind"].str.endswith(":clean"), "delay_s"].to_numpy(float)
    alive_h = m.alive_s / 3600
    store = store_write_load(
        heartbeats_per_s=m.heartbeats / d,
        joins_per_s=m.joins / d,
        leaves_per_s=m.goodbyes / d,
        expiries_per_s=m.expiries / d,
        cursor_updates_per_s=cursor_in / d,
        db_commits_per_s=p.db_commits_per_s,
        ttl_ops_per_s=p.ttl_ops_per_s,
    )
    extra: dict[str, Any] = {
        "server_msgs_per_s": (msgs_in + msgs_out) / d,
        "server_msgs_in_per_s": msgs_in / d,
        "server_msgs_out_per_s": msgs_out / d,
        "per_client_msgs_per_s": (msgs_in + msgs_out) / d / clients,
        "server_out_mbps": bytes_out * 8 / d / 1e6,
        "server_in_mbps": bytes_in * 8 / d / 1e6,
        "per_client_down_kbps": bytes_out * 8 / d / clients / 1e3,
        "server_cpu_utilisation": (msgs_in + msgs_out) * p.cpu_per_message_us * 1e-6 / d,
        "cursor_msgs_in_per_s": cursor_in / d,
        "cursor_msgs_out_per_s": cursor_out / d,
        "cursor_msgs_out_exact_per_s": exact_cursor_msgs_per_s(p),
        "presence_msgs_per_s": (m.msgs_in + m.msgs_out) / d,
        "heartbeats_per_s": m.heartbeats / d,
        "detection_delay_p50_s": _pct(delays, 50),
        "detection_delay_p99_s": _pct(delays, 99),
        "crash_detection_p50_s": _pct(crash_delays, 50),
        "crash_detection_p99_s": _pct(crash_delays, 99),
        "clean_detection_p50_s": _pct(clean_delays, 50),
        "departures": len(delays),
        "false_offline": m.false_offline,
        "false_offline_per_hour": m.false_offline / alive_h if alive_h > 0 else math.nan,
        "rejoins": m.rejoins,
        "cursor_rate_hz": p.cursor_rate_hz,
        "cursor_display_delay_ms": _pct(pair.get("delay", np.zeros(0)), 50) * 1000,
        "cursor_interp_error_px_p50": _pct(pair.get("interp_shape", np.zeros(0)), 50),
        "cursor_interp_error_px_p95": _pct(pair.get("interp_shape", np.zeros(0)), 95),
        "cursor_snap_error_px_p50": _pct(pair.get("snap_shape", np.zeros(0)), 50),
        "cursor_snap_error_px_p95": _pct(pair.get("snap_shape", np.zeros(0)), 95),
        "cursor_lag_error_px_p50": _pct(pair.get("interp_now", np.zeros(0)), 50),
        "cursor_snap_jump_px_p95": _pct(pair.get("snap_jump", np.zeros(0)), 95),
        "cursor_interp_jump_px_p95": _pct(pair.get("interp_jump", np.zeros(0)), 95),
        **store,
    }
    summary = Summary.from_latencies(
        delays * 1000.0,
        duration_s=d,
        wire_bytes=bytes_in + bytes_out,
        requests=0,
        connections=clients,
        server_memory_bytes=float(len(m.tracker)) * 200.0,
        lost=0,
        extra=extra,
    )
    return RunResult(params=p.as_dict(), deliveries=frame, summary=summary)
