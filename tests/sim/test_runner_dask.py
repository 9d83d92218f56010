"""The sweep runner on a dask.distributed cluster gives the same results as a local run."""

import pandas as pd
import pytest

from rtsim.sim.runner import replicate, sweep
from rtsim.sim.transports import TransportParams, simulate_transports

distributed = pytest.importorskip("distributed")

SMALL = TransportParams(clients=20, rate=5, duration_s=10, loss=0.01)


def test_dask_cluster_matches_serial() -> None:
    grid = {"transport": ["websocket", "long-polling"], "rtt_ms": [20.0, 80.0]}
    serial = sweep(simulate_transports, SMALL, grid, reps=3, seed=4, progress=False)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        on_cluster = sweep(
            simulate_transports, SMALL, grid, reps=3, seed=4, progress=False, client=client
        )
        reps = replicate(simulate_transports, SMALL, reps=3, seed=4, progress=False, client=client)
    pd.testing.assert_frame_equal(serial, on_cluster)
    pd.testing.assert_frame_equal(
        replicate(simulate_transports, SMALL, reps=3, seed=4, progress=False), reps
    )


def test_not_a_client() -> None:
    with pytest.raises(ValueError, match=r"client must be a dask\.distributed\.Client"):
        replicate(simulate_transports, SMALL, reps=2, client=object())
