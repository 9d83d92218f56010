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
                       durations: a fan-out faster than the mean is faster per
                       delivery; the excess of a slower one is interruption, which
                       comes per stretch of time: a fan-out of ``n`` meets
                       ``n / n_cal`` of the calibration fan-out's excesses, each of
                       its length); long polling: the parked polls answered in the
                       order they were parked (the first ones worker by worker), each
                       ``server_us`` + ``answer_share`` × ``request_us`` [5][6], the
                       rest of ``request_us`` when the next poll arrives; the answer
                       round meets interruptions as a fan-out of its length does; a
                       subscriber whose next poll has not arrived gets the message in
                       that poll's answer
``write_to_read``      loopback + the client loop's wake-up when its process was     [2][4]
                       idle (empirical, at least the calibration's fastest
                       write → read), then ``client_us`` of CPU on that process,
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
[5] ``benchmarks/bench_longpoll_storm.py``: one traced long-polling run at 2,000
subscribers with the server's and the workers' CPU sampled (/proc/PID/schedstat) and
every poll's arrival logged: the server answers all parked polls of a message in one
event-loop round (no re-poll is read before its last answer), in the order of its waiter
list, which the first polls fill worker by worker (see :data:`~rtsim.sim.stage_calibration.
ANSWER_SHARE`). [6] The long-polling cost runs of [4], fitted through the model itself
(:func:`~rtsim.sim.stage_fit.fit_request_costs`): ``request_us``, ``client_request_us``
and ``answer_share`` at each of the two sizes are those with which the model reproduces
that run's server and worker CPU and its fan-out-to-write p50; between the sizes the
share is interpolated
(:meth:`~rtsim.sim.stage_calibration.TransportCosts.share_at`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ..core.stages import STAGES
from ..core.transport import Transport, parse_transport
from .cpu_share import SharedCores
from .seeding import as_seed_sequence
from .stage_calibration import (
    _QS,
    ANSWER_SHARE,
    CpuRun,
    StageCalibration,
    TransportCosts,
    _draw,
    calibrate_stages,
)
from .warmup import extra_us

__all__ = [
    "ANSWER_SHARE",
    "CpuRun",
    "StageCalibration",
    "TransportCosts",
    "calibrate_stages",
    "simulate_stages",
]


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
    ack: bool = True,
    warmth: bool = True,
    park_order: bool = True,
    stalls: bool = True,
    broker_hop_ms: list[float] | None = None,
    relay_us: float = 0.0,
) -> pd.DataFrame:
    """Simulate the stages of every delivery; one row per delivery (ms), the
    :func:`~rtsim.core.stages.stage_frame` columns (``trace`` is the message number).

    ``frame.attrs["cpu_s"]`` holds the CPU seconds the model charged to the ``server``,
    the workers together (``client``), the ``publisher`` and the ``relay``.

    Each switch turns one mechanism off (to measure what it closes; see
    :data:`rtsim.lab.stage_compare.MECHANISMS`): ``epoll_ms`` (whole-ms timer
    wake-ups), ``fanout_variance`` (per-message cost drawn instead of its mean),
    ``core_sharing`` (a core for every process instead of ``cal.cores`` shared),
    ``server_core`` (the busy server keeps a core), ``wake_busy`` (no wake-up when every
    core is busy), ``idle_gap`` (wake-ups by idle gap), ``size_law`` (CPU costs grow
    with connections), ``wake_cpu`` (a wake-up's own CPU, by idle gap), ``ack`` (the
    server's ack of each publish waking the publisher, whose sleep restarts there),
    ``warmth`` (work after a longer idle gap costs more CPU: for the server and the
    workers the calibration's warm-up law, :mod:`rtsim.sim.warmup`, a slower start that
    warms up over the work since the process woke; for the publisher (and calibrations
    without a warm-up law) the burst law, :func:`~rtsim.sim.stage_calibration.fit_burst`,
    a burst's CPU added once per idle gap;
    or, in a calibration without either, the older factor law,
    :func:`~rtsim.sim.stage_calibration.fit_warmth`; with either the wake-up CPU lumps are
    not charged, the law covers them), ``park_order`` (long polling: parked polls answered
    in the order they were parked, the first ones worker by worker, instead of in
    subscriber order, which alternates between the workers), ``stalls`` (the excess of a
    fan-out slower than its mean drawn as interruptions per stretch of time, so a short
    fan-out rarely meets one and a long one meets several, instead of scaling every
    delivery's cost). Raises
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
        procs + 1,
        cal.cores if core_sharing else procs,
        dedicated=SRV if server_core else None,
        clock=procs,
    )
    ack_s = cal.ack_return_ms * 1e-3 if ack else math.nan
    add = warmth and bool(cal.burst or cal.warmup)  # burst/warm-up laws replace warmth
    warm = warmth and bool(cal.warmth) and not add
    wake_cpu = wake_cpu and not (warm or add)  # both laws include the wake-ups' CPU
    role_of = ["server"] + ["client"] * P + ["publisher", "server", "clock"]
    burst = [1.0] * (procs + 1)  # each process's current warmth factor
    # The warm-up law's state per process: amplitude, τ (µs) and work (µs) since it woke.
    w_amp = [0.0] * (procs + 1)
    w_tau = [0.0] * (procs + 1)
    w_done = [0.0] * (procs + 1)
    cpu = [0.0] * (procs + 1)  # CPU seconds charged to each process
    cost = cal.cost(t).at(n) if size_law else cal.cost(t)
    c_srv = cost.server_us * 1e-6
    c_cli = cost.client_us * 1e-6
    c_req = (cost.request_us or 100.0) * 1e-6
    share = cost.answer_share
    ws = cal.cost(Transport.WEBSOCKET)
    stall_s = ws.server_us * 1e-6 * ws.at_n  # the calibration's mean fan-out
    c_cli_req = cost.client_request_us * 1e-6
    c_pub = cal.publish_us * 1e-6
    lo_min = cal.loopback_min_ms * 1e-3
    rd_min = (cal.read_min_ms if cal.read_min_ms is not None else cal.loopback_min_ms) * 1e-3
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
        idle = eng.idle(p, ready)
        gap_ms = (ready - eng.busy_until[p]) * 1e3
        slept = idle and gap_ms > 0.05
        if add and role_of[p] in cal.warmup:
            # After an idle gap the work runs slower at first and warms up as it goes.
            if slept:
                w_amp[p], w_tau[p] = cal.warmup_at(role_of[p], gap_ms)
                w_done[p] = 0.0
            w_us = work * 1e6
            work += extra_us(w_amp[p], w_tau[p], w_done[p], w_us) * 1e-6
            w_done[p] += w_us
        elif add:
            # A burst after an idle gap pays the burst CPU of that gap first.
            work += cal.burst_us(role_of[p], gap_ms) * 1e-6 if slept else 0.0
        elif warm:
            # A burst after an idle gap runs at the warmth factor of that gap, to its end.
            if slept:
                burst[p] = cal.warm_factor(role_of[p], gap_ms)
            work *= burst[p]
        elif wake_cpu and idle:
            # A process that was idle pays its wake-up's CPU first (measured by idle gap).
            work += cal.wake_cpu_us(gap_ms) * 1e-6
        cpu[p] += work
        eng.submit(p, ready, work, done)

    def net_ms(role: str) -> float:
        # The wake-up CPU the calibration run paid inside its measured delays: charged as
        # CPU on the woken process instead (by its own idle gap), so taken out here.
        if not (wake_cpu and cal.wakeup_cpu_us and role in cal.idle_gap_ms):
            return 0.0
        return cal.wake_cpu_us(cal.idle_gap_ms[role]) * 1e-3

    def shifted(role: str, p: int, at: float, base: float, floor: float) -> float:
        # The calibrated wake-up moved to this loop's idle gap (longer sleep: slower):
        # as CPU (``wake_cpu``), else as the measured wake-up latency (``idle_gap``).
        if wake_cpu and cal.wakeup_cpu_us:
            return max(base - net_ms(role) * 1e-3, floor)
        if not idle_gap:
            return base
        gap_ms = (at - eng.busy_until[p]) * 1e3
        return max(base + cal.wake_shift_ms(role, gap_ms) * 1e-3, floor)

    def loop_delay(p: int, at: float) -> float:
        if eng.idle(p, at) and (eng.free_core() or not wake_busy):
            base = float(np.interp(rng.uniform(0, 100), _QS, loop_q)) * 1e-3
            return shifted("client", p, at, base, rd_min)
        return rd_min

    def on_read(i: int, k: int) -> Any:
        def done(now: float) -> None:
            read[i, k] = now

        return done

    # --- push transports: one write per subscriber in the fan-out ------------------------
    writes_left = np.full(m, n)

    def on_write(i: int, k: int) -> Any:
        def done(now: float) -> None:
            write[i, k] = now
            fan_end[i] = now
            writes_left[i] -= 1
            if writes_left[i] == 0:
                acked(i, now)
            q = 1 + int(proc[k])
            submit(q, now + loop_delay(q, now), c_cli, on_read(i, k))

        return done

    # --- long polling: parked requests answered, the rest at their next request ----------
    cursor = np.full(n, -1)  # last message index answered to each subscriber
    parked = np.ones(n, dtype=bool)  # every subscriber's first request is waiting
    # The server answers parked polls in the order they were parked (its waiter list).
    # The first polls come worker by worker (each worker connects its own subscribers);
    # later ones in the order the re-polls reached the server.
    parked_at = np.arange(n, dtype=float)
    if park_order:
        parked_at[np.lexsort((np.arange(n), proc))] = np.arange(n)
    park_seq = [float(n)]
    upto = [-1]  # messages whose fan-out has begun

    def answer(k: int, at: float, stall: float = 0.0) -> None:
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
                    c_req * (1 - share),
                    requested(k),
                )

            submit(q, now + loop_delay(q, now), c_cli_req + c_cli * count, handled)

        submit(SRV, at, c_srv * count + c_req * share + stall, written)

    def requested(k: int) -> Any:
        def done(now: float) -> None:
            if upto[0] > cursor[k]:
                answer(k, now)
            else:
                parked[k] = True
                if park_order:
                    parked_at[k] = park_seq[0]
                    park_seq[0] += 1

        return done

    def interruptions(busy_s: float) -> float:
        # The part of a fan-out's time above its mean is interruption (preemption, a
        # collection): it comes per stretch of time, not per delivery. Work of busy_s
        # seconds meets busy_s / stall_s of the calibration fan-outs' interruptions
        # (rounded at random), each of its length; the seconds they add.
        if not (stalls and fanout_variance):
            return 0.0
        segs = busy_s / stall_s
        hits = int(segs) + int(rng.random() < segs - int(segs))
        extra = np.clip(_draw(rng, cal.fanout_shape, hits) - 1.0, 0.0, None).sum()
        return float(extra) * stall_s

    def fan_out(i: int) -> Any:
        def done(now: float) -> None:
            start[i] = now
            fan_end[i] = now
            upto[0] = i
            # Ready since the publish arrived: ahead of anything that arrived after it
            # (the fan-out runs in the same callback as the publish, as in the server).
            at = float(arrived[i])
            if t is Transport.LONG_POLLING:
                waiting = np.flatnonzero(parked)
                # The answer round meets interruptions as a fan-out does, by its length.
                per = interruptions(len(waiting) * (c_srv + c_req * share)) / max(len(waiting), 1)
                for kk in waiting[np.argsort(parked_at[waiting], kind="stable")]:
                    answer(int(kk), at, per)
                if broker_hop_ms is None:
                    acked(i, now)  # parked requests are woken; their answers come later
            else:
                f = float(shape[i])
                if stalls and fanout_variance:
                    c = c_srv * min(f, 1.0) + interruptions(n * c_srv) / n
                else:
                    c = c_srv * f
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
            acked(i, now)  # the relay acks once the broker has the message

        return done

    def published(i: int) -> Any:
        def done(now: float) -> None:
            dest = SRV if broker_hop_ms is None else RELAY
            idle = eng.idle(dest, now) and (eng.free_core() or not wake_busy)
            tr = shifted("server", dest, sent[i], float(transit[i]), lo_min) if idle else lo_min
            arrive = sent[i] + tr
            arrived[i] = arrive
            submit(dest, arrive, 0.0, on_received(i))
            if broker_hop_ms is None:
                submit(SRV, arrive, float(to_fan[i]), fan_out(i))
            else:
                submit(RELAY, arrive, relay_us * 1e-6, relayed(i))
            sent_done[i] = now
            if i + 1 < m:
                at = wake(now, float(due[i + 1]), i + 1)
                if now < acked_at[i] < at:  # the ack, still on its way, comes first
                    at = wake(float(acked_at[i]), float(due[i + 1]), i + 1)
                plan(i + 1, at)

        return done

    # --- the publisher's sleep: its own timer, or restarted by the server's ack ---------
    next_at = np.full(m, np.inf)  # when message j is to be sent, as planned now
    fired = np.zeros(m, dtype=bool)
    sent_done = np.full(m, np.nan)
    acked_at = np.full(m, np.nan)

    def fire(j: int, at: float) -> Any:
        def done(now: float) -> None:
            if fired[j] or next_at[j] != at:
                return  # replaced by a later plan
            fired[j] = True
            submit(PUB, now, 0.0, stamped(j))
            submit(PUB, now, c_pub, published(j))

        return done

    def plan(j: int, at: float) -> None:
        next_at[j] = at
        eng.submit(procs, at, 0.0, fire(j, at))

    def acked(i: int, now: float) -> None:
        # The ack wakes the publisher before its timer: the loop sleeps again from there.
        if math.isnan(ack_s):
            return
        acked_at[i] = now + ack_s
        j = i + 1
        if j < m and not fired[j] and not math.isnan(sent_done[i]) and acked_at[i] < next_at[j]:
            plan(j, wake(float(acked_at[i]), float(due[j]), j))

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

    plan(0, float(residual[0]))
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
    frame.attrs["cpu_s"] = {
        "server": cpu[SRV],
        "client": float(sum(cpu[1 : P + 1])),
        "publisher": cpu[PUB],
        "relay": cpu[RELAY] if broker_hop_ms is not None else 0.0,
    }
    return frame
