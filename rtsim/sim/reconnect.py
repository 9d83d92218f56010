"""Reconnects in SimPy time, driven by the core :class:`~rtsim.core.reconnect.ReconnectPolicy`.

Three experiments:

* :func:`simulate_fallback` (claim C20): clients behind networks that block some transports
  (a proxy that refuses the WebSocket upgrade, one that buffers event streams) run the
  cascade WebSocket → SSE → long polling → polling; how long until each one is connected,
  and on what?
* :func:`simulate_degradation` (claim C20, the server's side): a server whose core cannot
  keep up sends its pushed clients to interval polling (the live server's own detector and
  the clients' own policy) and calls them back once it has recovered;
* :func:`simulate_reconnect_storm` (claim C21): a server restart drops every connection at
  once; clients come back with exponential backoff, with or without jitter, to a server that
  can only complete so many handshakes per second.

Each client's policy is the very object the live client uses; this module only supplies
time (SimPy) and the outcome of each connection attempt.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import simpy

from ..core.backoff import Backoff, Jitter
from ..core.params import Spec, check, param, validate
from ..core.reconnect import (
    Action,
    Connect,
    Event,
    Failed,
    Lost,
    Opened,
    ReconnectPolicy,
    SetTimer,
    Start,
    TimerFired,
)
from ..core.results import percentile
from ..core.transport import Transport, parse_transport
from .network import FifoCpu, Link
from .seeding import children

__all__ = [
    "DegradeParams",
    "DegradeResult",
    "FallbackParams",
    "StormParams",
    "StormResult",
    "simulate_degradation",
    "simulate_fallback",
    "simulate_reconnect_storm",
    "storm_comparison",
]


class _Driver:
    """Feeds one client's policy in SimPy time and carries out its actions."""

    def __init__(
        self,
        env: simpy.Environment,
        policy: ReconnectPolicy,
        attempt: Callable[[_Driver, Transport], None],
    ) -> None:
        self.env = env
        self.policy = policy
        self.attempt_fn = attempt
        self.attempts = 0
        self.opened_at: float | None = None
        self.transport: Transport | None = None

    def feed(self, event: Event) -> None:
        for action in self.policy.handle(event, self.env.now):
            self._do(action)

    def _do(self, action: Action) -> None:
        if isinstance(action, Connect):
            self.attempts += 1
            self.attempt_fn(self, action.transport)
        elif isinstance(action, SetTimer):
            ev = self.env.timeout(action.delay)
            ev.callbacks.append(lambda _e: self.feed(TimerFired()))

    def later(self, delay: float, event: Event) -> None:
        ev = self.env.timeout(max(0.0, delay))
        ev.callbacks.append(lambda _e: self.feed(event))


# --- fallback (C20) ---------------------------------------------------------------------------
@dataclass(frozen=True)
class FallbackParams:
    """Who is blocked from what, and how fast a blocked attempt fails.

    ``blocked`` maps a transport to the fraction of clients whose network blocks it. A
    blocked attempt fails after ``fail_after_s`` (a proxy that answers 403 at once: about one
    round trip; one that silently hangs: the client's connect timeout, e.g. 10 s).
    """

    clients: int = param(1000, lo=1, unit="clients", help="clients running the cascade")
    blocked: dict[str, float] = field(default_factory=lambda: {"websocket": 0.1, "sse": 0.05})
    rtt_ms: float = param(50.0, lo=0, unit="ms", help="round trip")
    fail_after_s: float = param(
        0.1, lo=0, lo_open=True, unit="s", help="how long a blocked attempt takes to fail"
    )
    failures_before_fallback: int = param(
        2, lo=1, help="failed attempts on one transport before the next one"
    )
    backoff: Backoff = field(default_factory=lambda: Backoff(base_s=0.5, cap_s=10.0))
    poll_interval_s: float = param(5.0, lo=0, lo_open=True, unit="s", help="polling interval")

    def __post_init__(self) -> None:
        validate(self)
        for name, frac in self.blocked.items():
            parse_transport(name)
            reason = check(frac, _FRACTION)
            if reason is not None:
                raise ValueError(f"blocked fraction for {name} {reason}")


_FRACTION = Spec(lo=0, hi=1)


def simulate_fallback(
    params: FallbackParams, seed: int | np.random.SeedSequence = 0
) -> pd.DataFrame:
    """One row per client: the transport it ended on, attempts, and time to connected (s)."""
    block_ss, policy_ss = children(seed, 2)
    rng = np.random.default_rng(block_ss)
    env = simpy.Environment()
    link = Link(rtt_s=params.rtt_ms / 1000, jitter_s=0.0)
    setup_s = 3 * link.rtt_s  # TCP + TLS 1.3 + HTTP/upgrade
    blocked = {
        parse_transport(t): rng.random(params.clients) < frac for t, frac in params.blocked.items()
    }

    def attempt(client: int) -> Callable[[_Driver, Transport], None]:
        def go(d: _Driver, t: Transport) -> None:
            if t in blocked and blocked[t][client]:
                d.later(params.fail_after_s, Failed("blocked"))
            else:
                d.later(setup_s, Opened())

        return go

    drivers = []
    for k, child in enumerate(children(policy_ss, params.clients)):
        policy = ReconnectPolicy(
            rng=np.random.default_rng(child),
            failures_before_fallback=params.failures_before_fallback,
            backoff=params.backoff,
            poll_interval_s=params.poll_interval_s,
        )
        d = _Driver(env, policy, attempt(k))
        drivers.append(d)
        d.feed(Start())
    # Run until everyone is open (bounded: the cascade always ends on a transport).
    env.run(until=3600)
    rows = []
    for k, d in enumerate(drivers):
        opened = [t for t, state, _ in d.policy.history if state.value == "open"]
        rows.append(
            {
                "client": k,
                "transport": d.policy.transport.value,
                "attempts": d.attempts,
                "connected_s": opened[0] if opened else math.nan,
            }
        )
    return pd.DataFrame(rows)


# --- reconnect storm (C21) --------------------------------------------------------------------
@dataclass(frozen=True)
class StormParams:
    """A restart that drops ``clients`` connections at t = 0.

    The server is down for ``outage_s`` (attempts are refused after one round trip), then
    completes handshakes one at a time on one core at ``handshake_ms`` each (TLS + auth +
    subscribe; 1 ms ≈ 1,000 handshakes/s). An attempt still queued after
    ``connect_timeout_s`` is abandoned by the client, which backs off and tries again.
    """

    clients: int = param(10_000, lo=1, unit="clients", help="connections dropped at t = 0")
    outage_s: float = param(2.0, lo=0, unit="s", help="server down time")
    handshake_ms: float = param(
        1.0, lo=0, lo_open=True, unit="ms", help="server CPU per handshake (one core)"
    )
    connect_timeout_s: float = param(
        3.0, lo=0, lo_open=True, unit="s", help="client gives up a queued attempt after this"
    )
    rtt_ms: float = param(50.0, lo=0, unit="ms", help="round trip")
    jitter: Jitter = param(
        Jitter.FULL, choices=tuple(j.value for j in Jitter), help="backoff jitter"
    )
    backoff_base_s: float = param(1.0, lo=0, lo_open=True, unit="s", help="first backoff ceiling")
    backoff_cap_s: float = param(30.0, lo=0, lo_open=True, unit="s", help="largest backoff ceiling")
    horizon_s: float = param(300.0, lo=0, lo_open=True, unit="s", help="simulated time")

    def __post_init__(self) -> None:
        object.__setattr__(self, "jitter", Jitter(self.jitter))
        validate(self)
        Backoff(self.backoff_base_s, self.backoff_cap_s)  # validates the pair

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["jitter"] = self.jitter.value
        return d


@dataclass(frozen=True)
class StormResult:
    params: dict[str, Any]
    attempts: pd.DataFrame  # one row per attempt: time, client, outcome
    reconnected_s: np.ndarray  # per client; NaN if not back within the horizon
    summary: dict[str, float]

    def timeline(self, bin_s: float = 0.1) -> pd.DataFrame:
        """Attempts and successes per bin (for plotting the storm)."""
        bins = np.arange(0, self.params["horizon_s"] + bin_s, bin_s)
        a = self.attempts
        out = pd.DataFrame({"t": bins[:-1]})
        out["attempts"] = np.histogram(a["time"], bins)[0]
        back = self.reconnected_s[np.isfinite(self.reconnected_s)]
        out["connected"] = np.histogram(back, bins)[0]
        out["attempts_per_s"] = out["attempts"] / bin_s
        return out


def simulate_reconnect_storm(
    params: StormParams, seed: int | np.random.SeedSequence = 0
) -> StormResult:
    """Every client loses its connection at t = 0; replay the reconnection storm."""
    env = simpy.Environment()
    cpu = FifoCpu()
    rtt = params.rtt_ms / 1000
    handshake = params.handshake_ms / 1000
    backoff = Backoff(params.backoff_base_s, params.backoff_cap_s, jitter=params.jitter)
    log_t: list[float] = []
    log_c: list[int] = []
    log_o: list[str] = []
    reconnected = np.full(params.clients, np.nan)

    def log(t: float, client: int, outcome: str) -> None:
        log_t.append(t)
        log_c.append(client)
        log_o.append(outcome)

    def attempt(client: int) -> Callable[[_Driver, Transport], None]:
        def go(d: _Driver, _t: Transport) -> None:
            now = env.now
            arrive = now + rtt  # SYN reaches the server after ~half an RTT; TLS adds more
            if arrive < params.outage_s:
                log(now, client, "refused")
                d.later(rtt, Failed("refused"))
                return

            def at_server(_e: Any) -> None:
                start = cpu.start_time(env.now)
                if start - env.now > params.connect_timeout_s:
                    # The client will have given up before we get to it: no work done.
                    log(now, client, "timeout")
                    d.later(params.connect_timeout_s - (env.now - now), Failed("timeout"))
                    return
                done = cpu.submit(env.now, handshake)
                ok_at = done + rtt / 2

                def opened(_e: Any) -> None:
                    reconnected[client] = env.now
                    d.feed(Opened())

                log(now, client, "ok")
                ev2 = env.timeout(ok_at - env.now)
                ev2.callbacks.append(opened)

            ev = env.timeout(arrive - now)
            ev.callbacks.append(at_server)

        return go

    drivers = []
    for k, child in enumerate(children(seed, params.clients)):
        policy = ReconnectPolicy(
            rng=np.random.default_rng(child), cascade=[Transport.WEBSOCKET], backoff=backoff
        )
        # Connected (and stable) since long before the restart: open the policy without a
        # real attempt, ``stable_after_s`` before t = 0, so the restart is a healthy loss.
        d = _Driver(env, policy, attempt(k))
        policy.handle(Start(), -policy.stable_after_s)
        policy.handle(Opened(), -policy.stable_after_s)
        drivers.append(d)
    for d in drivers:
        d.feed(Lost("server restart"))
    env.run(until=params.horizon_s)

    attempts = pd.DataFrame({"time": log_t, "client": log_c, "outcome": log_o})
    back = reconnected[np.isfinite(reconnected)]
    per_s = np.histogram(attempts["time"], np.arange(0, params.horizon_s + 1, 1.0))[0]
    summary = {
        "clients": float(params.clients),
        "reconnected": float(len(back)),
        "t50_s": percentile(back, 50, resolution=1e-6),
        "t99_s": percentile(back, 99, resolution=1e-6),
        "t100_s": float(back.max()) if len(back) == params.clients else math.nan,
        "attempts": float(len(attempts)),
        "attempts_per_client": len(attempts) / params.clients,
        "timeouts": float((attempts["outcome"] == "timeout").sum()),
        "refused": float((attempts["outcome"] == "refused").sum()),
        "peak_attempts_per_s": float(per_s.max()) if len(per_s) else 0.0,
        "server_busy_s": cpu.busy_s,
    }
    return StormResult(params.as_dict(), attempts, reconnected, summary)


def storm_comparison(
    base: StormParams, jitters: Iterable[Jitter] = tuple(Jitter), seed: int = 0
) -> pd.DataFrame:
    """One summary row per jitter mode, same clients and seed."""
    from dataclasses import replace

    rows = []
    for j in jitters:
        r = simulate_reconnect_storm(replace(base, jitter=j), seed)
        rows.append({"jitter": Jitter(j).value, **r.summary})
    return pd.DataFrame(rows)


# --- degradation under overload (C20, the server's side) --------------------------------------
@dataclass(frozen=True)
class DegradeParams:
    """One server core fanning ``rate`` messages/s out to ``clients`` pushed connections.

    Each push delivery costs ``push_us`` of the core; a poll costs ``poll_request_us`` plus
    ``poll_message_us`` per message in its answer (the answer is one batch). The server
    samples its lag (how long new work would wait for the core: the event loop's lag)
    every ``sample_s`` and feeds the live server's core
    :class:`~rtsim.core.overload.OverloadDetector`; while overloaded it sends pushed
    clients to polling every ``degrade_poll_s`` (the article's 5–10 s) and refuses push
    reconnects (503), and clients come back (a handshake of ``handshake_ms``) once a poll
    answer says it has recovered — each client's moves are the core
    :class:`~rtsim.core.reconnect.ReconnectPolicy`'s. ``overload_lag_ms`` 0: never
    degrade (the server just falls behind).
    """

    clients: int = param(1000, lo=1, unit="clients", help="pushed connections at t = 0")
    rate: float = param(50.0, lo=0, lo_open=True, unit="msg/s", help="messages published")
    push_us: float = param(20.0, lo=0, unit="us", help="server CPU per push delivery")
    poll_request_us: float = param(200.0, lo=0, unit="us", help="server CPU per poll")
    poll_message_us: float = param(
        2.0, lo=0, unit="us", help="server CPU per message in a poll answer"
    )
    handshake_ms: float = param(1.0, lo=0, unit="ms", help="server CPU per push reconnect")
    overload_lag_ms: float = param(
        250.0, lo=0, unit="ms", help="lag that counts as overload (0: never degrade)",
        source="ServerConfig.overload_lag_ms",
    )  # fmt: skip
    degrade_poll_s: float = param(
        5.0, lo=0, lo_open=True, unit="s", help="polling interval while degraded",
        source="article: 5-10 s",
    )  # fmt: skip
    hold_s: float = param(5.0, lo=0, unit="s", help="least time between overload changes")
    sample_s: float = param(0.1, lo=0, lo_open=True, unit="s", help="lag sampling period")
    duration_s: float = param(30.0, lo=0, lo_open=True, unit="s", help="publishing time")

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True)
class DegradeResult:
    params: dict[str, Any]
    overload: pd.DataFrame  # one row per detector change: time, overloaded
    summary: dict[str, float]


def simulate_degradation(
    params: DegradeParams, seed: int | np.random.SeedSequence = 0
) -> DegradeResult:
    """Publish for ``duration_s``, then let every client catch up; count and time it all.

    ``summary``: ``degraded_clients`` (clients sent to polling at least once),
    ``degrades`` (times), ``overloaded_s`` (time spent overloaded), ``delivered`` and
    ``lost`` (every client must get every message once: ``lost`` is 0 by construction of
    the cursor, and checked), ``p50_ms`` / ``p99_ms`` publish-to-delivery latency,
    ``utilisation`` (core busy time over the run).
    """
    from ..core.overload import OverloadDetector
    from ..core.reconnect import Degrade, Recover

    p = params
    env = simpy.Environment()
    cpu = FifoCpu()
    enabled = p.overload_lag_ms > 0
    detector = OverloadDetector(enter_lag_ms=p.overload_lag_ms if enabled else 1.0, hold_s=p.hold_s)
    n_msgs = max(1, round(p.rate * p.duration_s))
    pub_t = np.arange(n_msgs) / p.rate
    published = 0  # messages published so far
    cursor = np.full(p.clients, -1)  # last message index each client has (or is sent)
    received = np.zeros(p.clients, dtype=np.int64)
    pushing: dict[int, None] = {}
    degraded_once = np.zeros(p.clients, dtype=bool)
    lat: list[np.ndarray] = []
    changes: list[tuple[float, bool]] = []
    counts = {"degrades": 0}
    push_s, handshake_s = p.push_us / 1e6, p.handshake_ms / 1000

    def deliver(k: int, upto: int, at: float) -> None:
        first = cursor[k] + 1
        if upto >= first:
            lat.append(at - pub_t[first : upto + 1])
            received[k] += upto + 1 - first
            cursor[k] = upto

    drivers: list[_Driver] = []

    def degrade(d: _Driver, k: int) -> None:
        counts["degrades"] += 1
        degraded_once[k] = True
        d.feed(Degrade(p.degrade_poll_s))

    def attempt(k: int) -> Callable[[_Driver, Transport], None]:
        def go(d: _Driver, t: Transport) -> None:
            if t is Transport.POLLING:
                d.later(0.0, Opened())
                poll(d, k)
                return
            if detector.overloaded:  # 503 with the interval
                degrade(d, k)
                return
            done = cpu.submit(env.now, handshake_s)

            def opened(_e: Any) -> None:
                d.feed(Opened())
                deliver(k, published - 1, env.now)  # resume from the cursor (replay)
                pushing[k] = None

            env.timeout(done - env.now).callbacks.append(opened)

        return go

    def poll(d: _Driver, k: int) -> None:
        m = max(0, published - 1 - int(cursor[k]))
        upto = published - 1
        done = cpu.submit(env.now, (p.poll_request_us + m * p.poll_message_us) / 1e6)

        def answered(_e: Any) -> None:
            deliver(k, upto, env.now)
            if not detector.overloaded and d.policy.state.value == "open":
                d.feed(Recover())
            else:
                env.timeout(p.degrade_poll_s).callbacks.append(lambda _e: poll(d, k))

        env.timeout(done - env.now).callbacks.append(answered)

    for k, child in enumerate(children(seed, p.clients)):
        policy = ReconnectPolicy(
            rng=np.random.default_rng(child),
            cascade=[Transport.WEBSOCKET],
            poll_interval_s=p.degrade_poll_s,
        )
        d = _Driver(env, policy, attempt(k))
        policy.handle(Start(), 0.0)
        policy.handle(Opened(), 0.0)
        drivers.append(d)
        pushing[k] = None

    def publisher() -> Any:
        nonlocal published
        for i in range(n_msgs):
            yield env.timeout(max(0.0, pub_t[i] - env.now))
            published = i + 1
            ks = list(pushing)
            if not ks:
                continue
            start = cpu.start_time(env.now)
            cpu.submit(env.now, push_s * len(ks))
            ends = start + push_s * np.arange(1, len(ks) + 1)
            lat.append(ends - pub_t[i])
            idx = np.array(ks)
            received[idx] += 1
            cursor[idx] = i

    def sampler() -> Any:
        while True:
            yield env.timeout(p.sample_s)
            lag_ms = (cpu.start_time(env.now) - env.now) * 1000
            change = detector.sample(env.now, lag_ms) if enabled else None
            if change is None:
                continue
            changes.append((env.now, change.overloaded))
            if change.overloaded:
                for k in list(pushing):
                    del pushing[k]
                    degrade(drivers[k], k)

    env.process(publisher())
    env.process(sampler())
    horizon = p.duration_s + 2 * p.degrade_poll_s + 2 * p.hold_s + 60
    env.run(until=horizon)
    # Whatever was still owed at the horizon (a client between polls) is counted as lost.
    lost = int(n_msgs * p.clients - received.sum())
    all_lat = np.concatenate(lat) if lat else np.zeros(0)
    overloaded_s = 0.0
    ends = [t for t, _ in changes[1:]] + [horizon]
    for (t0, on), t1 in zip(changes, ends, strict=False):
        if on:
            overloaded_s += min(t1, horizon) - t0
    summary = {
        "clients": float(p.clients),
        "messages": float(n_msgs),
        "degraded_clients": float(degraded_once.sum()),
        "degrades": float(counts["degrades"]),
        "overload_changes": float(len(changes)),
        "overloaded_s": overloaded_s,
        "delivered": float(received.sum()),
        "lost": float(lost),
        "p50_ms": percentile(all_lat * 1000, 50, resolution=1e-3) if len(all_lat) else math.nan,
        "p99_ms": percentile(all_lat * 1000, 99, resolution=1e-3) if len(all_lat) else math.nan,
        "utilisation": cpu.busy_s / max(horizon, cpu.free_at),
    }
    overload = pd.DataFrame(changes, columns=["time", "overloaded"])
    return DegradeResult(asdict(p), overload, summary)
