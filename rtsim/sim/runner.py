"""The experiment runner: seeded replications and parameter sweeps with confidence intervals.

Seeds come from :class:`numpy.random.SeedSequence`: replication ``r`` of every sweep point
uses the ``r``-th child of the root seed (common random numbers, which sharpen comparisons
between points). Work can run on a local process pool; each task's seed depends only on its
replication index, so parallel results are identical to serial ones.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from itertools import product
from multiprocessing import get_context
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from tqdm.auto import tqdm

from ..core.results import RunResult
from .seeding import children

__all__ = ["mean_ci", "replicate", "replication_seeds", "sweep"]

RunFn = Callable[[Any, np.random.SeedSequence], RunResult]


def replication_seeds(seed: int, reps: int) -> list[np.random.SeedSequence]:
    """The ``reps`` independent child seeds of root ``seed``."""
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    if isinstance(seed, np.random.SeedSequence):
        raise ValueError("seed must be a non-negative integer, got a SeedSequence")
    return children(seed, reps)


def mean_ci(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Sample mean and the half-width of its Student-t confidence interval (NaN if n < 2)."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return math.nan, math.nan
    m = float(x.mean())
    if len(x) < 2:
        return m, math.nan
    sem = float(x.std(ddof=1)) / math.sqrt(len(x))
    return m, float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1)) * sem


def _run_one(task: tuple[RunFn, Any, np.random.SeedSequence]) -> dict[str, Any]:
    fn, params, seed = task
    return fn(params, seed).summary.to_dict()


def _execute(
    tasks: list[tuple[RunFn, Any, np.random.SeedSequence]],
    workers: int | None,
    progress: bool | None,
    desc: str,
    client: Any = None,
) -> list[dict[str, Any]]:
    show = (progress is None or progress) and len(tasks) > 1
    bar_kw: dict[str, Any] = {"total": len(tasks), "desc": desc, "disable": not show}
    if progress is None:
        bar_kw["delay"] = 1.0  # only for work that takes more than a second
    if client is not None:
        return _execute_dask(tasks, client, bar_kw)
    n_workers = _workers(workers, len(tasks))
    if n_workers <= 1:
        out = []
        with tqdm(**bar_kw) as bar:
            for t in tasks:
                out.append(_run_one(t))
                bar.update()
        return out
    with (
        ProcessPoolExecutor(n_workers, mp_context=get_context("spawn")) as pool,
        tqdm(**bar_kw) as bar,
    ):
        results = []
        for r in pool.map(_run_one, tasks, chunksize=1):
            results.append(r)
            bar.update()
    return results


def _execute_dask(
    tasks: list[tuple[RunFn, Any, np.random.SeedSequence]], client: Any, bar_kw: dict[str, Any]
) -> list[dict[str, Any]]:
    """Run the tasks on a ``dask.distributed.Client``; results come back in task order."""
    if not (hasattr(client, "map") and hasattr(client, "gather")):
        raise ValueError(f"client must be a dask.distributed.Client, got {type(client).__name__}")
    futures = client.map(_run_one, tasks, pure=False)
    index = {f.key: i for i, f in enumerate(futures)}
    results: list[dict[str, Any] | None] = [None] * len(tasks)
    from distributed import as_completed

    with tqdm(**bar_kw) as bar:
        for fut in as_completed(futures):  # type: ignore[no-untyped-call]
            results[index[fut.key]] = fut.result()
            bar.update()
    return [r for r in results if r is not None]


def _workers(workers: int | None, n_tasks: int) -> int:
    if workers is None:
        return 1
    if workers < 0:
        raise ValueError(f"workers must be >= 0 (0 = one per core), got {workers}")
    if workers == 0:
        workers = os.cpu_count() or 1
    return max(1, min(workers, n_tasks))


def replicate(
    fn: RunFn,
    params: Any,
    *,
    reps: int = 10,
    seed: int = 0,
    workers: int | None = None,
    progress: bool | None = None,
    client: Any = None,
) -> pd.DataFrame:
    """Run ``fn(params, seed_r)`` for ``reps`` replications; one row of summary per replication.

    ``workers``: ``None`` or 1 runs serially, ``0`` uses one process per core, ``n`` uses n.
    ``client``: a ``dask.distributed.Client`` to run on a cluster instead (same results).
    """
    seeds = replication_seeds(seed, reps)
    rows = _execute([(fn, params, s) for s in seeds], workers, progress, "replications", client)
    df = pd.DataFrame(rows)
    df.insert(0, "rep", range(reps))
    return df


def sweep(
    fn: RunFn,
    base: Any,
    grid: Mapping[str, Iterable[Any]],
    *,
    metrics: Sequence[str] = ("p50_ms", "p95_ms", "p99_ms", "deliveries_per_s"),
    reps: int = 5,
    seed: int = 0,
    confidence: float = 0.95,
    workers: int | None = None,
    progress: bool | None = None,
    client: Any = None,
) -> pd.DataFrame:
    """Run every combination of ``grid`` (fields of the dataclass ``base``) ``reps`` times.

    ``workers`` as in :func:`replicate`; ``client``: a ``dask.distributed.Client`` (a
    cluster beyond this machine) — the results are identical to a serial run.

    Returns a tidy frame: one row per (grid point, metric) with ``mean``, ``ci_low``,
    ``ci_high``, ``std`` and ``n``, plus one column per grid field.
    """
    names = list(grid)
    values = [list(v) for v in grid.values()]
    for name, vals in zip(names, values, strict=True):
        if not vals:
            raise ValueError(f"grid field {name!r} has no values")
    points = [dict(zip(names, combo, strict=True)) for combo in product(*values)]
    param_list = [replace(base, **pt) for pt in points]  # validates every point up front
    seeds = replication_seeds(seed, reps)
    tasks = [(fn, prm, s) for prm in param_list for s in seeds]
    rows = _execute(tasks, workers, progress, "sweep", client)
    out = []
    for i, pt in enumerate(points):
        block = rows[i * reps : (i + 1) * reps]
        for metric in metrics:
            if metric not in block[0]:
                raise ValueError(f"unknown metric {metric!r}; the summary has {sorted(block[0])}")
            xs = np.array([r[metric] for r in block], dtype=float)
            m, hw = mean_ci(xs, confidence)
            out.append(
                {
                    **pt,
                    "metric": metric,
                    "mean": m,
                    "ci_low": m - hw,
                    "ci_high": m + hw,
                    "std": float(xs.std(ddof=1)) if reps > 1 else math.nan,
                    "n": reps,
                }
            )
    return pd.DataFrame(out)
