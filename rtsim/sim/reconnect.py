"""Reconnects in SimPy time, driven by the core :class:`~rtsim.core.reconnect.ReconnectPolicy`.

Two experiments:

* :func:`simulate_fallback` (claim C20): clients behind networks that block some transports
  (a proxy that refuses the WebSocket upgrade, one that buffers event streams) run the
  cascade WebSocket → SSE → long polling → polling; how long until each one is connected,
  and on what?
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
    "FallbackParams",
    "StormParams",
    "StormResult",
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
