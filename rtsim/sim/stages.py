"""The live path as stages on processes sharing the machine's cores.

:func:`calibrate_stages` reads one ``rtsim load`` run with stage timestamps (the lab
calibrates on WebSocket, 200 subscribers, 50% load) into a :class:`StageCalibration`;
:func:`simulate_stages` then predicts any transport, load and subscriber count with the
same stages as :mod:`rtsim.core.stages`. The machine is modelled as it is: the server,
the load generator's ``P`` worker processes and the publisher are single-threaded
processes sharing ``C`` cores (:class:`~rtsim.sim.cpu_share.SharedCores`, processor
sharing); each stage is either CPU work on one of them or a delay:

=====================  ===========================================================  ======
stage                  model                                                        source
=====================  ===========================================================  ======
``publish_timer``      the publisher's sleep ends on a whole millisecond (epoll      [1]
                       timeouts are whole ms: ``ceil`` of the remaining delay) plus
                       the measured residual wake-up (empirical), then its send
                       (CPU on the publisher, ``publish_us``)
``publish_transit``    loopback + the server loop's wake-up when it was idle         [2]
                       (empirical), else queued behind the server's work
``server_to_fanout``   CPU on the server (empirical)                                 [2]
``fanout_to_write``    fan-out in subscription order, one job of ``server_us`` per   [2][4]
                       subscriber, its variance per message (measured fan-out
                       durations); long polling: a subscriber whose next request has
                       not arrived gets the message in that request's answer
``write_to_read``      loopback + the client loop's wake-up when its process was     [2][4]
                       idle (empirical), then ``client_us`` of CPU on that process,
                       after the deliveries queued before it
``client_handle``      empirical                                                     [2]
=====================  ===========================================================  ======

[1] ``selectors.EpollSelector.select`` rounds its timeout up to whole milliseconds
(CPython ``Lib/selectors.py``). [2] ``rtsim load --transport websocket --subscribers
200 --rate R --json`` at 50% load: the stage frame of its traced deliveries
(``RunResult.deliveries``) and the CPU seconds of the server, the workers and the
publisher; see :func:`calibrate_stages`. [3] ``TransportParams.cpu_per_request_us``
(100 µs, assumption) when no long-polling cost was measured. [4] Per transport, CPU per
delivery of the server and the clients (and per request for long polling): one short
``rtsim load`` run of that transport at the calibration's size
(:func:`rtsim.lab.compare.calibrate`), the only thing measured per transport.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from ..core.stages import STAGES, Wakeup, timer_residual
from ..core.transport import Transport, parse_transport
from .cpu_share import SharedCores
from .seeding import as_seed_sequence

__all__ = ["StageCalibration", "TransportCosts", "calibrate_stages", "simulate_stages"]

_QS = np.linspace(0, 100, 101)
#: Share of a long-poll request's server CPU spent answering it (the handler resumed,
#: the response built and written) rather than receiving and parking it — an assumption
#: (aiohttp does the larger part of its per-request work on the response side).
ANSWER_SHARE = 0.6


def _quantiles(v: np.ndarray) -> list[float]:
    v = np.asarray(v, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return [0.0] * len(_QS)
    return [float(x) for x in np.percentile(np.maximum(v, 0.0), _QS)]


def _draw(rng: np.random.Generator, qs: list[float], n: int) -> np.ndarray:
    """``n`` draws from the empirical distribution given by its 0..100th percentiles."""
    out: np.ndarray = np.interp(rng.uniform(0, 100, n), _QS, np.asarray(qs))
    return out


@dataclass(frozen=True)
class TransportCosts:
    """CPU microseconds of one transport on this machine.

    ``server_us``: the server per delivery (per subscriber of a fan-out); ``client_us``:
    a load-generator worker per delivery; ``request_us``: the server per long-poll request
    (beyond its deliveries); ``client_request_us``: a worker per long-poll response.
    """

    server_us: float
    client_us: float
    request_us: float = 0.0
    client_request_us: float = 0.0
    #: Costs grow with the connections a process serves (caches): cost × (n / at_n) ** e,
    #: ``e`` fitted from two runs of different sizes (:meth:`fit`); 0 = flat.
    at_n: int = 200
    server_exponent: float = 0.0
    client_exponent: float = 0.0

    def at(self, subscribers: int) -> TransportCosts:
        """These costs for ``subscribers`` connections (the size law applied)."""
        r = max(subscribers, 1) / self.at_n
        fs, fc = r**self.server_exponent, r**self.client_exponent
        return replace(
            self,
            server_us=self.server_us * fs,
            request_us=self.request_us * fs,
            client_us=self.client_us * fc,
            client_request_us=self.client_request_us * fc,
            at_n=max(subscribers, 1),
            server_exponent=0.0,
            client_exponent=0.0,
        )

    @staticmethod
    def fit(small: TransportCosts, large: TransportCosts) -> TransportCosts:
        """``small``'s costs with the size exponents that make them ``large``'s at its
        size (each clipped to [0, 1])."""
        k = math.log(large.at_n / small.at_n)

        def e(a: float, b: float) -> float:
            return min(max(math.log(b / a) / k, 0.0), 1.0) if a > 0 and b > 0 and k else 0.0

        srv = (small.server_us + small.request_us, large.server_us + large.request_us)
        cli = (
            small.client_us + small.client_request_us,
            large.client_us + large.client_request_us,
        )
        return replace(small, server_exponent=e(*srv), client_exponent=e(*cli))


@dataclass(frozen=True)
class StageCalibration:
    """Empirical stage distributions (0..100th percentiles, ms) and CPU costs of one machine.

    ``costs`` maps a transport's value to its :class:`TransportCosts` (the calibration's
    own transport always; others when measured — a transport without costs falls back to
    WebSocket's). ``fanout_shape``: per-message fan-out cost relative to its mean.
    """

    timer_residual_ms: list[float]
    transit_ms: list[float]
    server_to_fanout_ms: list[float]
    fanout_shape: list[float]
    loopback_ms: list[float]
    client_handle_ms: list[float]
    costs: dict[str, TransportCosts]
    publish_us: float
    cores: int
    client_processes: int
    loopback_min_ms: float = 0.02
    #: Median wake-up of an idle loop by how long it slept (:func:`rtsim.live.wakeup.
    #: measure_wakeup`); empty: wake-ups do not depend on the idle gap.
    wakeup_gaps_ms: list[float] = field(default_factory=list)
    wakeup_ms: list[float] = field(default_factory=list)
    #: CPU µs a process spends waking after each of those gaps (empty: none charged).
    wakeup_cpu_us: list[float] = field(default_factory=list)
    #: The idle gaps (ms) of the calibration run: server, worker, publisher.
    idle_gap_ms: dict[str, float] = field(default_factory=dict)
    source: dict[str, str] = field(default_factory=dict)

    @property
    def per_delivery_us(self) -> float:
        """The server's CPU per WebSocket delivery (µs)."""
        return self.costs["websocket"].server_us

    @property
    def client_us(self) -> float:
        """A worker's CPU per WebSocket delivery (µs)."""
        return self.costs["websocket"].client_us

    def with_costs(self, transport: Transport | str, costs: TransportCosts) -> StageCalibration:
        """A copy with ``transport``'s CPU costs set (measured by a short run of it)."""
        t = parse_transport(transport).value
        return replace(self, costs={**self.costs, t: costs})

    def cost(self, transport: Transport | str) -> TransportCosts:
        t = parse_transport(transport).value
        return self.costs.get(t, self.costs["websocket"])

    def capacity_deliveries_per_s(self, transport: Transport | str, subscribers: int) -> float:
        """Deliveries/s at which the server's core, or all cores together, are full
        (server + workers + publisher per message), from the calibrated mean costs."""
        n = max(1, subscribers)
        c = self.cost(transport).at(n)
        per_msg_us = float(np.mean(self.server_to_fanout_ms)) * 1e3
        server = c.server_us + c.request_us + per_msg_us / n
        total = server + c.client_us + c.client_request_us + self.publish_us / n
        return float(min(1e6 / server, self.cores * 1e6 / total))

    def wake_cpu_us(self, gap_ms: float) -> float:
        """CPU µs a loop idle for ``gap_ms`` spends waking (0 without a measurement)."""
        if not self.wakeup_cpu_us:
            return 0.0
        return Wakeup(self.wakeup_gaps_ms, self.wakeup_ms, self.wakeup_cpu_us).cpu_at(gap_ms)

    def wake_shift_ms(self, role: str, gap_ms: float) -> float:
        """How much longer (ms; negative: shorter) a ``role`` loop idle for ``gap_ms``
        takes to wake than it did in the calibration run."""
        if not self.wakeup_gaps_ms or role not in self.idle_gap_ms:
            return 0.0
        x = np.log(np.asarray(self.wakeup_gaps_ms))
        y = np.asarray(self.wakeup_ms)

        def w(g: float) -> float:
            return float(np.interp(math.log(max(g, 1e-3)), x, y))

        return w(gap_ms) - w(self.idle_gap_ms[role])

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StageCalibration:
        """The inverse of :meth:`as_dict` (e.g. a committed ``compare_stages.json``)."""
        d = dict(d)
        d["costs"] = {k: TransportCosts(**v) for k, v in d["costs"].items()}
        return cls(**d)


def calibrate_stages(
    frame: pd.DataFrame,
    loadgen_cpu_s: float,
    deliveries: int,
    rate: float,
    cores: int,
    client_processes: int,
    command: str = "",
    *,
    server_cpu_s: float | None = None,
    messages: int | None = None,
    publisher_cpu_s: float | None = None,
    wakeup: Wakeup | None = None,
) -> StageCalibration:
    """A :class:`StageCalibration` from one measured WebSocket run's stage frame.

    Args:
        frame: ``RunResult.deliveries`` of :func:`~rtsim.live.clients.loadgen.run_load`
            (one row per traced delivery; trace every message for the transit correction).
        loadgen_cpu_s: the load generator's CPU seconds (workers and publisher).
        deliveries: deliveries of that run; messages: messages it published (default:
            the traced messages).
        rate: its publish rate (messages/s), for the publisher's epoll rounding.
        cores: cores of the machine; client_processes: the load generator's processes.
        server_cpu_s: the server's CPU seconds in that run (default: estimated from the
            fan-out durations); publisher_cpu_s: the publisher's share of
            ``loadgen_cpu_s`` (default: 60 µs per message, an assumption).
        wakeup: :func:`rtsim.live.wakeup.measure_wakeup` of this machine (by idle gap:
            wake-up latency and CPU); without it wake-ups do not depend on the load and
            cost no CPU of their own. With it, the run's CPU costs are net of the
            wake-ups it paid (one per message per process, after the run's idle gaps).
        command: the command that measured it (recorded as the source).

    Raises ``ValueError`` for an empty frame.
    """
    if len(frame) == 0 or deliveries <= 0:
        raise ValueError("the calibration run has no traced deliveries")
    per_msg = frame.groupby("trace", sort=False).first()
    idx = per_msg.index.map(lambda t: int(str(t).rsplit(":", 1)[1]))
    pm = per_msg.iloc[np.argsort(np.asarray(idx))]
    seq = np.sort(np.asarray(idx, dtype=float))
    m = int(messages) if messages else len(pm)
    interval_ms = 1e3 / rate
    fan_ms = pm["fanout_ms"].to_numpy(dtype=float)
    transit = pm["publish_transit"].to_numpy(dtype=float)
    timer = pm["publish_timer"].to_numpy(dtype=float)
    to_fan = pm["server_to_fanout"].to_numpy(dtype=float)
    n = np.maximum(pm["n"].to_numpy(dtype=float), 1)
    # The server still busy with the previous fan-out when a publish arrived: not transit.
    due = seq * interval_ms
    sent = due + timer
    prev_end = np.full(len(pm), -np.inf)
    if len(pm) > 1:
        prev_end[1:] = sent[:-1] + transit[:-1] + to_fan[:-1] + fan_ms[:-1] - sent[1:]
    free_transit = np.maximum(transit - np.clip(prev_end, 0.0, None), 0.0)
    # The publisher's wake-up beyond the whole-millisecond rounding of its sleep
    # (consecutive traced messages only).
    residual = timer.copy()
    if len(pm) > 1:
        residual = timer_residual(timer, due, sent, np.diff(seq) == 1)
    idle = -prev_end[np.isfinite(prev_end) & (prev_end < 0)]
    n_mean = float(np.mean(n))

    def wake_cpu(gap_ms: float) -> float:
        return wakeup.cpu_at(gap_ms) if wakeup is not None else 0.0

    publish_all = (publisher_cpu_s / max(m, 1) * 1e6) if publisher_cpu_s else 60.0
    gap_pub = max(interval_ms - publish_all * 1e-3, 0.01)
    publish_us = max(publish_all - wake_cpu(gap_pub), 10.0)
    worker_cpu_s = loadgen_cpu_s - (publisher_cpu_s or m * publish_all * 1e-6)
    client_all = max(worker_cpu_s, 0.0) / deliveries * 1e6
    gap_cli = max(interval_ms - n_mean / client_processes * client_all * 1e-3, 0.01)
    client_us = max(client_all - m * client_processes * wake_cpu(gap_cli) / deliveries, 0.5)
    per_msg_us = float(np.mean(to_fan)) * 1e3
    gap_srv = float(np.median(idle)) if len(idle) else interval_ms
    if server_cpu_s is not None:
        net = server_cpu_s * 1e6 - m * (per_msg_us + wake_cpu(gap_srv))
        server_us = max(net / deliveries, 0.5)
    else:
        server_us = float(np.mean(fan_ms / n)) * 1e3
    shape = fan_ms / n
    shape = shape / shape.mean() if shape.mean() > 0 else np.ones_like(shape)
    # Loopback + client wake-up without a backlog: the fastest tenth of write → read less
    # the worker's own CPU for the delivery (the rest waited behind other deliveries in the
    # client process, which the model queues).
    w2r = frame["write_to_read"].to_numpy(dtype=float)
    fast = w2r[w2r <= np.percentile(w2r, 10)] - client_us * 1e-3
    cmd = command or "rtsim load --transport websocket --subscribers 200 (50% load) --json"
    return StageCalibration(
        timer_residual_ms=_quantiles(residual),
        transit_ms=_quantiles(free_transit),
        server_to_fanout_ms=_quantiles(to_fan),
        fanout_shape=_quantiles(shape),
        loopback_ms=_quantiles(fast),
        client_handle_ms=_quantiles(frame["client_handle"].to_numpy(dtype=float)),
        costs={"websocket": TransportCosts(server_us=server_us, client_us=client_us)},
        publish_us=publish_us,
        cores=cores,
        client_processes=client_processes,
        loopback_min_ms=float(max(np.percentile(free_transit, 1), 0.0)) if len(pm) else 0.02,
        wakeup_gaps_ms=list(wakeup.gaps_ms) if wakeup else [],
        wakeup_ms=list(wakeup.latency_ms) if wakeup else [],
        wakeup_cpu_us=list(wakeup.cpu_us) if wakeup else [],
        idle_gap_ms={"server": gap_srv, "client": gap_cli, "publisher": gap_pub},
        source={
            "stages": cmd,
            "epoll": "CPython selectors.EpollSelector: timeout rounded up to whole ms",
            "costs": "CPU seconds of the server (/proc), the workers and the publisher"
            " (getrusage) in that run",
            "per_request_us": "TransportParams.cpu_per_request_us default (assumption)"
            " unless a long-polling run measured it",
        },
    )


def simulate_stages(
    cal: StageCalibration,
    transport: Transport | str,
    subscribers: int,
    rate: float,
    duration_s: float,
    seed: int = 0,
    *,
    epoll_ms: bool = True,
    fanout_variance: bool = True,
    core_sharing: bool = True,
    server_core: bool = True,
    wake_busy: bool = True,
    idle_gap: bool = True,
    size_law: bool = True,
    wake_cpu: bool = True,
    broker_hop_ms: list[float] | None = None,
    relay_us: float = 0.0,
) -> pd.DataFrame:
    """Simulate the stages of every delivery; one row per delivery (ms), the
    :func:`~rtsim.core.stages.stage_frame` columns (``trace`` is the message number).

    Each switch turns one mechanism off (to measure what it closes; see
    :data:`rtsim.lab.stage_compare.MECHANISMS`): ``epoll_ms`` (whole-ms timer
    wake-ups), ``fanout_variance`` (per-message cost drawn instead of its mean),
    ``core_sharing`` (a core for every process instead of ``cal.cores`` shared),
    ``server_core`` (the busy server keeps a core), ``wake_busy`` (no wake-up when every
    core is busy), ``idle_gap`` (wake-ups by idle gap), ``size_law`` (CPU costs grow
    with connections), ``wake_cpu`` (a wake-up's own CPU, by idle gap). Raises
    ``ValueError`` for bad sizes.

    ``broker_hop_ms`` (the 0..100th percentiles of a measured broker hop, ms; see
    :func:`rtsim.lab.broker_compare.measure_redis_hop`) puts a second instance in the
    path: the publish reaches a relay process (``relay_us`` µs of CPU per message, its own
    process on the shared cores), crosses the broker, and the server fans it out;
    ``publish_transit`` stays the publisher → relay leg, ``server_to_fanout`` covers the
    relay, the hop and the server's receipt.
    """
    t = parse_transport(transport)
    if subscribers < 1 or not rate > 0 or not duration_s > 0:
        raise ValueError("subscribers must be >= 1, rate and duration_s > 0")
    rng = np.random.default_rng(as_seed_sequence(seed))
    m = max(1, round(rate * duration_s))
    n = subscribers
    P = max(1, cal.client_processes)
    SRV, PUB, RELAY = 0, P + 1, P + 2
    procs = P + 2 + (broker_hop_ms is not None)
    eng = SharedCores(
        procs, cal.cores if core_sharing else procs, dedicated=SRV if server_core else None
    )
    cost = cal.cost(t).at(n) if size_law else cal.cost(t)
    c_srv = cost.server_us * 1e-6
    c_cli = cost.client_us * 1e-6
    c_req = (cost.request_us or 100.0) * 1e-6
    c_cli_req = cost.client_request_us * 1e-6
    c_pub = cal.publish_us * 1e-6
    lo_min = cal.loopback_min_ms * 1e-3
    residual = _draw(rng, cal.timer_residual_ms, m + 1) * 1e-3
    transit = _draw(rng, cal.transit_ms, m) * 1e-3
    to_fan = _draw(rng, cal.server_to_fanout_ms, m) * 1e-3
    shape = _draw(rng, cal.fanout_shape, m) if fanout_variance else np.ones(m)
    loop_q = np.asarray(cal.loopback_ms)
    due = np.arange(m) / rate
    sent = np.zeros(m)
    received = np.zeros(m)
    start = np.zeros(m)
    fan_end = np.zeros(m)
    arrived = np.zeros(m)
    write = np.full((m, n), np.nan)
    read = np.full((m, n), np.nan)
    proc = np.arange(n) % P

    def submit(p: int, ready: float, work: float, done: Any) -> None:
        # A process that was idle pays its wake-up's CPU first (measured by idle gap).
        if wake_cpu and eng.idle(p, ready):
            work += cal.wake_cpu_us((ready - eng.busy_until[p]) * 1e3) * 1e-6
        eng.submit(p, ready, work, done)

    def net_ms(role: str) -> float:
        # The wake-up CPU the calibration run paid inside its measured delays: charged as
        # CPU on the woken process instead (by its own idle gap), so taken out here.
        if not (wake_cpu and cal.wakeup_cpu_us and role in cal.idle_gap_ms):
            return 0.0
        return cal.wake_cpu_us(cal.idle_gap_ms[role]) * 1e-3

    def shifted(role: str, p: int, at: float, base: float) -> float:
        # The calibrated wake-up moved to this loop's idle gap (longer sleep: slower):
        # as CPU (``wake_cpu``), else as the measured wake-up latency (``idle_gap``).
        if wake_cpu and cal.wakeup_cpu_us:
            return max(base - net_ms(role) * 1e-3, lo_min)
        if not idle_gap:
            return base
        gap_ms = (at - eng.busy_until[p]) * 1e3
        return max(base + cal.wake_shift_ms(role, gap_ms) * 1e-3, lo_min)

    def loop_delay(p: int, at: float) -> float:
        if eng.idle(p, at) and (eng.free_core() or not wake_busy):
            base = float(np.interp(rng.uniform(0, 100), _QS, loop_q)) * 1e-3
            return shifted("client", p, at, base)
        return lo_min

    def on_read(i: int, k: int) -> Any:
        def done(now: float) -> None:
            read[i, k] = now

        return done

    # --- push transports: one write per subscriber in the fan-out ------------------------
    def on_write(i: int, k: int) -> Any:
        def done(now: float) -> None:
            write[i, k] = now
            fan_end[i] = now
            q = 1 + int(proc[k])
            submit(q, now + loop_delay(q, now), c_cli, on_read(i, k))

        return done

    # --- long polling: parked requests answered, the rest at their next request ----------
    cursor = np.full(n, -1)  # last message index answered to each subscriber
    parked = np.ones(n, dtype=bool)  # every subscriber's first request is waiting
    upto = [-1]  # messages whose fan-out has begun

    def answer(k: int, at: float) -> None:
        first, last = int(cursor[k]) + 1, upto[0]
        cursor[k] = last
        parked[k] = False
        count = last - first + 1

        def written(now: float) -> None:
            write[first : last + 1, k] = now
            q = 1 + int(proc[k])

            def handled(done_at: float) -> None:
                read[first : last + 1, k] = done_at
                submit(
                    SRV,
                    done_at + float(_draw(rng, cal.transit_ms, 1)[0]) * 1e-3,
                    c_req * (1 - ANSWER_SHARE),
                    requested(k),
                )

            submit(q, now + loop_delay(q, now), c_cli_req + c_cli * count, handled)

        submit(SRV, at, c_srv * count + c_req * ANSWER_SHARE, written)

    def requested(k: int) -> Any:
        def done(now: float) -> None:
            if upto[0] > cursor[k]:
                answer(k, now)
            else:
                parked[k] = True

        return done

    def fan_out(i: int) -> Any:
        def done(now: float) -> None:
            start[i] = now
            fan_end[i] = now
            upto[0] = i
            # Ready since the publish arrived: ahead of anything that arrived after it
            # (the fan-out runs in the same callback as the publish, as in the server).
            at = float(arrived[i])
            if t is Transport.LONG_POLLING:
                for kk in np.flatnonzero(parked):
                    answer(int(kk), at)
            else:
                c = c_srv * float(shape[i])
                for k in range(n):
                    submit(SRV, at, c, on_write(i, k))

        return done

    def on_received(i: int) -> Any:
        def done(now: float) -> None:
            received[i] = now

        return done

    def stamped(i: int) -> Any:
        def done(now: float) -> None:
            sent[i] = now  # the publisher stamps ``sent`` before its send (its CPU)

        return done

    def relayed(i: int) -> Any:
        def done(now: float) -> None:  # the relay's append done: the hop, then the server
            arrived[i] = now + float(_draw(rng, broker_hop_ms or [0.0], 1)[0]) * 1e-3
            submit(SRV, float(arrived[i]), float(to_fan[i]), fan_out(i))

        return done

    def published(i: int) -> Any:
        def done(now: float) -> None:
            dest = SRV if broker_hop_ms is None else RELAY
            idle = eng.idle(dest, now) and (eng.free_core() or not wake_busy)
            tr = shifted("server", dest, sent[i], float(transit[i])) if idle else lo_min
            arrive = sent[i] + tr
            arrived[i] = arrive
            submit(dest, arrive, 0.0, on_received(i))
            if broker_hop_ms is None:
                submit(SRV, arrive, float(to_fan[i]), fan_out(i))
            else:
                submit(RELAY, arrive, relay_us * 1e-6, relayed(i))
            if i + 1 < m:
                at = wake(now, float(due[i + 1]), i + 1)
                submit(PUB, at, 0.0, stamped(i + 1))
                submit(PUB, at, c_pub, published(i + 1))

        return done

    def wake(now: float, due_at: float, i: int) -> float:
        if due_at <= now:
            return now
        delay = due_at - now
        if epoll_ms:
            delay = math.ceil(delay * 1e3 - 1e-9) * 1e-3
        r = float(residual[i])
        if wake_cpu and cal.wakeup_cpu_us:
            r = max(r - net_ms("publisher") * 1e-3, 0.0)
        elif idle_gap:
            r = max(r + cal.wake_shift_ms("publisher", delay * 1e3) * 1e-3, 0.0)
        return now + delay + r

    submit(PUB, float(residual[0]), 0.0, stamped(0))
    submit(PUB, float(residual[0]), c_pub, published(0))
    eng.run()
    handle = _draw(rng, cal.client_handle_ms, m * n).reshape(m, n) * 1e-3
    handled = read + handle
    if t is Transport.LONG_POLLING:
        fan_end = start.copy()
    pos = np.tile(np.arange(n), m)
    frame = pd.DataFrame(
        {
            "trace": np.repeat(np.arange(m), n),
            "n": n,
            "position": pos,
            "fanout_ms": np.repeat((fan_end - start) * 1e3, n),
            "publish_timer": np.repeat((sent - due) * 1e3, n),
            "publish_transit": np.repeat((received - sent) * 1e3, n),
            "server_to_fanout": np.repeat((start - received) * 1e3, n),
            "fanout_to_write": (write - start[:, None]).ravel() * 1e3,
            "write_to_read": (read - write).ravel() * 1e3,
            "client_handle": (handled - read).ravel() * 1e3,
            "end_to_end": (handled - due[:, None]).ravel() * 1e3,
        }
    )
    assert set(STAGES) <= set(frame.columns)
    return frame
