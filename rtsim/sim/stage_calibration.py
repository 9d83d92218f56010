"""The stage model's calibration: what one traced run and a few CPU runs say of a machine.

:class:`StageCalibration` holds the empirical stage distributions (0..100th percentiles)
and the CPU costs per transport (:class:`TransportCosts`); :func:`calibrate_stages` reads
them from one ``rtsim load`` run with stage timestamps. The model that uses them, with the
source of every stage, is :mod:`rtsim.sim.stages`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from ..core.stages import Wakeup, timer_residual
from ..core.transport import Transport, parse_transport
from .warmup import _isotonic, warmup_amplitude

__all__ = [
    "ANSWER_SHARE",
    "ROLES",
    "CpuRun",
    "StageCalibration",
    "TransportCosts",
    "calibrate_stages",
    "fit_burst",
    "fit_warmth",
]

#: The processes of a load run whose CPU the model charges: the server, one load-generator
#: worker, the publisher.
ROLES: tuple[str, ...] = ("server", "client", "publisher")

_QS = np.linspace(0, 100, 101)

#: Share of a long-poll request's server CPU (``request_us``) spent answering it (the
#: parked handler woken, its messages read, the response built and written, in the
#: server's one event-loop round that answers every parked poll of a message) rather than
#: receiving and parking the next request (read after that round). Measured:
#: ``benchmarks/bench_longpoll_storm.py`` (2,000 subscribers, 0.5 msgs/s; the server's CPU
#: from /proc/PID/schedstat between a message's receipt and its last answer, against its
#: CPU for the whole storm): the answers take 0.42 of the storm's server CPU (45 messages
#: in 9 runs, 0.36-0.53), i.e. with ``server_us`` (12.8 µs) counted on the answer side
#: (0.42 × (12.8 + 133.1) - 12.8) / 133.1 = 0.36 of ``request_us``.
ANSWER_SHARE = 0.36


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
    answer_share: float = ANSWER_SHARE
    #: Long polling: the answer share measured at a second size (``large_n``
    #: connections; 0: none); between the two sizes it is interpolated in log(n), beyond
    #: them the nearer one holds (:meth:`at`).
    large_n: int = 0
    large_answer_share: float = ANSWER_SHARE

    def share_at(self, subscribers: int) -> float:
        """The answer share at ``subscribers`` connections."""
        if not self.large_n or self.large_n == self.at_n:
            return self.answer_share
        x = (math.log(max(subscribers, 1)) - math.log(self.at_n)) / math.log(
            self.large_n / self.at_n
        )
        w = min(max(x, 0.0), 1.0)
        return (1 - w) * self.answer_share + w * self.large_answer_share

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
            answer_share=self.share_at(subscribers),
            large_n=0,
        )

    @staticmethod
    def fit(small: TransportCosts, large: TransportCosts) -> TransportCosts:
        """``small``'s costs with the size exponents that make them ``large``'s at its
        size (each clipped to [0, 1]), and ``large``'s answer share at its size."""
        k = math.log(large.at_n / small.at_n)

        def e(a: float, b: float) -> float:
            return min(max(math.log(b / a) / k, 0.0), 1.0) if a > 0 and b > 0 and k else 0.0

        srv = (small.server_us + small.request_us, large.server_us + large.request_us)
        cli = (
            small.client_us + small.client_request_us,
            large.client_us + large.client_request_us,
        )
        return replace(
            small,
            server_exponent=e(*srv),
            client_exponent=e(*cli),
            large_n=large.at_n,
            large_answer_share=large.answer_share,
        )


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
    #: Cores of the machine (fractional: the part other work leaves a run).
    cores: float
    client_processes: int
    loopback_min_ms: float = 0.02
    #: The fastest write → read on a subscriber: loopback and the client's own read, the
    #: 1st percentile of the calibration run's ``write_to_read`` (None: ``loopback_min_ms``,
    #: as calibrations before it). ``loopback_min_ms`` is the publish's: the fastest
    #: publisher → server transit, which includes the server's receipt of the frame.
    read_min_ms: float | None = None
    #: Median wake-up of an idle loop by how long it slept (:func:`rtsim.live.wakeup.
    #: measure_wakeup`); empty: wake-ups do not depend on the idle gap.
    wakeup_gaps_ms: list[float] = field(default_factory=list)
    wakeup_ms: list[float] = field(default_factory=list)
    #: CPU µs a process spends waking after each of those gaps (empty: none charged).
    wakeup_cpu_us: list[float] = field(default_factory=list)
    #: The idle gaps (ms) of the calibration run: server, worker, publisher.
    idle_gap_ms: dict[str, float] = field(default_factory=dict)
    #: The server's ack of a publish reaches the publisher this long (ms) after the
    #: fan-out's end, and restarts its sleep (estimated: :func:`~rtsim.core.stages.
    #: timer_residual`); NaN: no ack modelled (calibrations before it).
    ack_return_ms: float = math.nan
    #: Warmth: CPU per unit of work, relative to a busy process's, by the idle gap (ms)
    #: before the burst — per role, ``[gaps_ms, factors]`` (:func:`fit_warmth`); empty:
    #: costs do not depend on the load.
    warmth: dict[str, list[list[float]]] = field(default_factory=dict)
    #: Burst cost: the CPU µs a burst of work pays after an idle gap (ms), on top of its
    #: work at a busy process's cost — per role, ``[gaps_ms, burst_us]`` (:func:`fit_burst`).
    #: When set it replaces :attr:`warmth` (an addition per burst, where warmth multiplies
    #: the burst's work).
    burst: dict[str, list[list[float]]] = field(default_factory=dict)
    #: Warm-up: per role, ``[gaps_ms, amplitudes, [tau_us], [unit_us]]``
    #: (:func:`rtsim.sim.warmup.fit_warmup`); where set it replaces :attr:`burst` for
    #: that role (work after an idle gap slower at first, warming up as it goes).
    warmup: dict[str, list[list[float]]] = field(default_factory=dict)
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

    def warm_factor(self, role: str, gap_ms: float) -> float:
        """How much more CPU ``role``'s work costs after an idle gap of ``gap_ms`` than in a
        busy process (1 at the shortest measured gap, flat beyond the measured range)."""
        law = self.warmth.get(role)
        if not law or not law[0]:
            return 1.0
        x = np.log(np.asarray(law[0], dtype=float))
        return float(np.interp(math.log(max(gap_ms, 1e-3)), x, np.asarray(law[1], dtype=float)))

    def burst_us(self, role: str, gap_ms: float) -> float:
        """CPU µs ``role`` pays for a burst after an idle gap of ``gap_ms`` (:attr:`burst`):
        interpolated in log(gap) between the measured gaps, flat beyond the longest, and
        falling linearly to 0 at no gap below the shortest (a process that never sleeps
        pays none). 0 without a law."""
        law = self.burst.get(role)
        return warmup_amplitude(law, gap_ms) if law else 0.0  # the same curve by gap

    def warmup_at(self, role: str, gap_ms: float) -> tuple[float, float]:
        """``(A, tau_us)`` of ``role``'s warm-up law after an idle gap of ``gap_ms``;
        ``(0, 0)`` without one."""
        law = self.warmup.get(role)
        if not law or not law[0]:
            return 0.0, 0.0
        return warmup_amplitude(law, gap_ms), float(law[2][0])

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
    # The server acks each publish after its fan-out; the ack wakes the publisher, whose
    # next sleep starts there (``ack_return_ms`` after the fan-out's end).
    ack_base = sent + transit + to_fan + fan_ms
    residual, ack_return = timer.copy(), math.nan
    if len(pm) > 1:
        residual, ack_return = timer_residual(timer, due, ack_base, np.diff(seq) == 1)
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
        read_min_ms=float(max(np.percentile(w2r, 1), 0.0)),
        ack_return_ms=ack_return,
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


@dataclass(frozen=True)
class CpuRun:
    """The CPU of one WebSocket load run (``rtsim load``), for :func:`fit_warmth`:
    ``rate`` msgs/s to ``subscribers`` over ``processes`` workers, ``published`` messages,
    CPU seconds of the server, the whole load generator and its publisher; for a traced
    run also its ``fanout_to_write`` p50 (ms; None when nothing was traced)."""

    rate: float
    subscribers: int
    processes: int
    published: int
    server_cpu_s: float
    loadgen_cpu_s: float
    publisher_cpu_s: float
    fanout_to_write_p50_ms: float | None = None

    def per_message_us(self, role: str) -> float:
        """CPU µs one process of ``role`` spent per message."""
        m = max(self.published, 1)
        if role == "server":
            return self.server_cpu_s / m * 1e6
        if role == "client":
            return (self.loadgen_cpu_s - self.publisher_cpu_s) / m / self.processes * 1e6
        return self.publisher_cpu_s / m * 1e6

    def units(self, role: str) -> float:
        """Units of work per message: deliveries (server), a worker's deliveries, 1 send."""
        if role == "server":
            return float(self.subscribers)
        if role == "client":
            return self.subscribers / self.processes
        return 1.0

    def gap_ms(self, role: str) -> float:
        """The idle gap (ms) before each message's burst: interval less the busy time."""
        return max(1e3 / self.rate - self.per_message_us(role) * 1e-3, 0.05)


def fit_burst(runs: list[CpuRun]) -> tuple[dict[str, list[list[float]]], dict[str, float]]:
    """Per role, the CPU a burst pays after an idle gap, and the CPU per unit of work of
    a busy process: each run's CPU per message = burst(gap) + units × per_unit.

    The per-unit cost is the median slope between runs at about the same gap (within
    1.5×) and of different sizes (at least 2× the units): the same sleep, more work.
    Without such a pair it is the shortest gap's CPU per unit (no burst there). The
    bursts are made non-decreasing in the gap (pool adjacent violators: noise must not
    make a longer sleep cheaper). The runs here: WebSocket at 200 subscribers and five
    rates, 50 subscribers at 600 msgs/s and 1,000 at 20 (a 200-subscriber run at 25
    msgs/s and the 1,000 one sleep about as long: 3.0 ms against 10.8 ms of server CPU per
    message on a 2-core VM, 9.7 µs per added delivery and a 1.1 ms burst). Returns
    ``({role: [gaps_ms, burst_us]}, {role: per_unit_us})``; fewer than two runs:
    ``({}, {})``.
    """
    if len(runs) < 2:
        return {}, {}
    law: dict[str, list[list[float]]] = {}
    unit: dict[str, float] = {}
    for role in ROLES:
        pts = sorted((r.gap_ms(role), r.per_message_us(role), r.units(role)) for r in runs)
        slopes = [
            (b[1] - a[1]) / (b[2] - a[2])
            for i, a in enumerate(pts)
            for b in pts[i + 1 :]
            if max(a[0], b[0]) <= 1.5 * min(a[0], b[0]) and max(a[2], b[2]) >= 2 * min(a[2], b[2])
        ]
        slopes = [x for x in slopes if x > 0]
        d = float(np.median(slopes)) if slopes else pts[0][1] / pts[0][2]
        if not d > 0:
            continue
        bursts = _isotonic([max(pm - u * d, 0.0) for _, pm, u in pts])
        law[role] = [[float(g) for g, _, _ in pts], [float(x) for x in bursts]]
        unit[role] = d
    return law, unit


def fit_warmth(runs: list[CpuRun]) -> dict[str, list[list[float]]]:
    """CPU per unit of work by idle gap, per role, relative to the shortest gap's.

    A process that slept longer does the same work more slowly (on this VM: caches and
    the hypervisor's idle handling; a run at 185 msgs/s to 50 subscribers cost the server
    22 µs per delivery, at 740 msgs/s 13 µs). Each run gives one point per role (its gap,
    its CPU per unit); the factors are made non-decreasing in the gap (noise must not make
    a longer sleep cheaper). Returns ``{role: [gaps_ms, factors]}``; fewer than two runs:
    ``{}``.
    """
    if len(runs) < 2:
        return {}
    out: dict[str, list[list[float]]] = {}
    for role in ROLES:
        pts = sorted((r.gap_ms(role), r.per_message_us(role) / r.units(role)) for r in runs)
        base = pts[0][1]
        if not base > 0:
            continue
        f = np.maximum.accumulate(np.maximum(np.asarray([c for _, c in pts]) / base, 1.0))
        out[role] = [[float(g) for g, _ in pts], [float(x) for x in f]]
    return out
