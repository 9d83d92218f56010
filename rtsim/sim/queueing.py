"""A broker is a queue: the service station, and its validation against queueing theory.

A single-threaded server (Redis, one JetStream stream, one Kafka partition leader) serves
requests one at a time, first come first served, so a message waits behind the ones ahead
of it. :func:`fifo_station` computes start and finish times of every job of a FIFO station
with ``c`` servers in bulk:

* ``c = 1``: the Lindley recursion ``f_n = max(a_n, f_{n-1}) + s_n``, vectorised as
  ``f = S + cummax(a − S + s)`` with ``S = cumsum(s)``;
* ``c > 1``: the Kiefer–Wolfowitz recursion (a heap of server free times).

The architecture model uses it in bulk mode; its per-event mode uses ``simpy.Resource``
instead. :func:`validate` checks both engines against closed forms — M/M/1, M/M/c (Erlang
C), M/D/1 (Pollaczek–Khinchine) — with replications, and checks Little's law
(``L = λW``) on every run.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import simpy

from ..core.results import RunResult, Summary
from .runner import mean_ci, replicate
from .theory import md1_sojourn, mm1_sojourn, mmc_sojourn

__all__ = [
    "VALIDATION_CASES",
    "QueueCase",
    "fifo_station",
    "number_in_system",
    "simulate_queue",
    "validate",
]


def fifo_station(
    arrivals: np.ndarray, services: np.ndarray, servers: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Start and finish times of FIFO jobs arriving at sorted ``arrivals`` with ``services``."""
    a = np.asarray(arrivals, dtype=float)
    s = np.asarray(services, dtype=float)
    if a.shape != s.shape:
        raise ValueError(f"arrivals and services differ in shape: {a.shape} vs {s.shape}")
    if servers < 1:
        raise ValueError(f"servers must be >= 1, got {servers}")
    if len(a) == 0:
        return a.copy(), a.copy()
    if np.any(np.diff(a) < 0):
        raise ValueError("arrivals must be sorted in time")
    if np.any(s < 0):
        raise ValueError("service times must be >= 0")
    if servers == 1:
        cum = np.cumsum(s)
        finish = cum + np.maximum.accumulate(a - cum + s)
        return finish - s, finish
    free = [0.0] * servers
    start = np.empty_like(a)
    for i, (ai, si) in enumerate(zip(a.tolist(), s.tolist(), strict=True)):
        f = free[0]
        st = ai if ai > f else f
        heapq.heapreplace(free, st + si)
        start[i] = st
    return start, start + s


def number_in_system(arrivals: np.ndarray, finish: np.ndarray) -> np.ndarray:
    """Jobs in the station just after each arrival (itself included): the backlog it sees.

    ``arrivals`` sorted; ``finish`` in job order. When jobs finish in order (one server),
    a job that arrives after its predecessor finished and is not done on arrival sees 1,
    so only the jobs that queue are searched for.
    """
    a = np.asarray(arrivals, dtype=float)
    f = np.asarray(finish, dtype=float)
    n = len(a)
    if n == 0 or np.any(f[1:] < f[:-1]):
        done = np.searchsorted(np.sort(f), a, side="right")
        out: np.ndarray = np.arange(1, n + 1) - done
        return out
    out = np.ones(n, dtype=np.int64)
    search = f <= a  # done on arrival (no service time)
    search[1:] |= a[1:] < f[:-1]  # arrives before the one ahead of it is done: it queues
    idx = np.flatnonzero(search)
    out[idx] = idx + 1 - np.searchsorted(f, a[idx], side="right")
    return out


@dataclass(frozen=True)
class QueueCase:
    """One validation case: Poisson arrivals at ``arrival_rate`` to ``servers`` servers.

    ``service`` is ``"exp"`` (M/M/c) or ``"det"`` (M/D/1); ``engine`` is ``"bulk"``
    (:func:`fifo_station`) or ``"simpy"`` (one SimPy process per job, ``simpy.Resource``).
    The first ``warmup`` fraction of jobs is discarded (the queue starts empty).
    """

    name: str
    arrival_rate: float
    service_rate: float
    servers: int = 1
    service: str = "exp"
    engine: str = "bulk"
    customers: int = 200_000
    warmup: float = 0.05
    tolerance: float = 0.02

    def __post_init__(self) -> None:
        if not (math.isfinite(self.arrival_rate) and self.arrival_rate > 0):
            raise ValueError(f"arrival_rate must be > 0, got {self.arrival_rate}")
        if not (math.isfinite(self.service_rate) and self.service_rate > 0):
            raise ValueError(f"service_rate must be > 0, got {self.service_rate}")
        if self.servers < 1:
            raise ValueError(f"servers must be >= 1, got {self.servers}")
        if self.service not in ("exp", "det"):
            raise ValueError(f"service must be 'exp' or 'det', got {self.service!r}")
        if self.engine not in ("bulk", "simpy"):
            raise ValueError(f"engine must be 'bulk' or 'simpy', got {self.engine!r}")
        if self.customers < 100:
            raise ValueError(f"customers must be >= 100, got {self.customers}")
        if not 0 <= self.warmup < 0.9:
            raise ValueError(f"warmup must be in [0, 0.9), got {self.warmup}")
        if self.service == "det" and self.servers != 1:
            raise ValueError("deterministic service is validated for one server (M/D/1) only")
        self.theory()  # raises for an unstable queue

    def theory(self) -> float:
        """The closed-form mean time in system."""
        if self.service == "det":
            return md1_sojourn(self.arrival_rate, 1.0 / self.service_rate)
        if self.servers == 1:
            return mm1_sojourn(self.arrival_rate, self.service_rate)
        return mmc_sojourn(self.arrival_rate, self.service_rate, self.servers)

    @property
    def formula(self) -> str:
        if self.service == "det":
            return "M/D/1 Pollaczek–Khinchine D + ρD/(2(1−ρ))"
        if self.servers == 1:
            return "M/M/1 1/(μ−λ)"
        return f"M/M/{self.servers} Erlang C C(c,a)/(cμ−λ) + 1/μ"


def _simpy_station(
    arrivals: np.ndarray, services: np.ndarray, servers: int
) -> tuple[np.ndarray, np.ndarray]:
    env = simpy.Environment()
    res = simpy.Resource(env, capacity=servers)
    start = np.empty_like(arrivals)
    finish = np.empty_like(arrivals)

    def job(i: int, s: float) -> Any:
        with res.request() as req:
            yield req
            start[i] = env.now
            yield env.timeout(s)
            finish[i] = env.now

    def source() -> Any:
        for i, (a, s) in enumerate(zip(arrivals.tolist(), services.tolist(), strict=True)):
            if a > env.now:
                yield env.timeout(a - env.now)
            env.process(job(i, s))

    env.process(source())
    env.run()
    return start, finish


def simulate_queue(case: QueueCase, seed: np.random.SeedSequence) -> RunResult:
    """One replication of ``case``: mean time in system, and Little's law on the run."""
    rng = np.random.default_rng(seed)
    n = case.customers
    arrivals = np.cumsum(rng.exponential(1.0 / case.arrival_rate, n))
    if case.service == "exp":
        services = rng.exponential(1.0 / case.service_rate, n)
    else:
        services = np.full(n, 1.0 / case.service_rate)
    if case.engine == "bulk":
        _, finish = fifo_station(arrivals, services, case.servers)
    else:
        _, finish = _simpy_station(arrivals, services, case.servers)
    first = int(n * case.warmup)
    t0, t1 = arrivals[first], arrivals[-1]
    sojourn = (finish - arrivals)[first:]
    # Little's law over the window [t0, t1]: L is the time-average number in system.
    area = np.clip(np.minimum(finish, t1) - np.maximum(arrivals, t0), 0, None).sum()
    span = t1 - t0
    big_l = area / span
    lam = (n - first) / span
    w = float(sojourn.mean())
    summary = Summary.from_latencies(
        sojourn * 1000.0,
        duration_s=float(span),
        wire_bytes=0.0,
        requests=0,
        connections=0,
        server_memory_bytes=0.0,
        extra={
            "mean_sojourn": w,
            "L": float(big_l),
            "lambda": float(lam),
            "little_rel_err": abs(big_l - lam * w) / big_l,
            "max_in_system": int(number_in_system(arrivals, finish).max()),
        },
    )
    return RunResult(params={"case": case.name}, deliveries=pd.DataFrame(), summary=summary)


#: The checks ``rtsim validate`` runs (time unit: one mean service time of M/M/1).
VALIDATION_CASES: tuple[QueueCase, ...] = (
    QueueCase("M/M/1 ρ=0.7", arrival_rate=0.7, service_rate=1.0),
    QueueCase("M/M/4 ρ=0.75", arrival_rate=3.0, service_rate=1.0, servers=4),
    QueueCase("M/D/1 ρ=0.7", arrival_rate=0.7, service_rate=1.0, service="det"),
    QueueCase(
        "M/M/1 ρ=0.5 (SimPy)", arrival_rate=0.5, service_rate=1.0, engine="simpy", customers=50_000
    ),
)


def validate(
    cases: tuple[QueueCase, ...] = VALIDATION_CASES,
    *,
    reps: int = 20,
    seed: int = 0,
    workers: int | None = None,
    progress: bool | None = None,
    little_tolerance: float = 0.01,
) -> pd.DataFrame:
    """Run every case ``reps`` times; one row per case (and one per case for Little's law).

    Columns: ``case``, ``check``, ``closed_form``, ``simulated``, ``ci95``, ``rel_err``,
    ``in_ci``, ``tolerance``, ``passed``. A mean-time case passes when it is within its
    tolerance of the closed form *and* the closed form lies inside the 95% CI; the Little's
    law row passes when ``|L − λW| / L`` is below ``little_tolerance`` on every run.
    """
    rows: list[dict[str, Any]] = []
    for case in cases:
        df = replicate(
            simulate_queue, case, reps=reps, seed=seed, workers=workers, progress=progress
        )
        theory = case.theory()
        m, hw = mean_ci(df["mean_sojourn"].to_numpy())
        rel = abs(m - theory) / theory
        in_ci = bool(abs(m - theory) <= hw)
        rows.append(
            {
                "case": case.name,
                "check": f"mean time in system — {case.formula}",
                "closed_form": theory,
                "simulated": m,
                "ci95": hw,
                "rel_err": rel,
                "in_ci": in_ci,
                "tolerance": case.tolerance,
                "passed": bool(rel <= case.tolerance and in_ci),
            }
        )
        worst = float(df["little_rel_err"].max())
        lm, lhw = mean_ci(df["L"].to_numpy())
        lw = float((df["lambda"] * df["mean_sojourn"]).mean())
        rows.append(
            {
                "case": case.name,
                "check": "Little's law L = λW (worst run)",
                "closed_form": lw,
                "simulated": lm,
                "ci95": lhw,
                "rel_err": worst,
                "in_ci": bool(abs(lm - lw) <= lhw),
                "tolerance": little_tolerance,
                "passed": worst <= little_tolerance,
            }
        )
    return pd.DataFrame(rows)
