"""Random disconnects hit only connected clients, in every model that has them.

A client is up for an exponential time of mean ``1 / r`` (``r`` = drops per hour / 3600),
then down for the backoff delay ``J`` plus the connection setup ``S``, then up again: an
alternating renewal process with cycle ``C = U + D``. The expected number of drops in
``[0, T)`` is ``sum_i P(S_{i-1} + U_i < T) = E[H(T - U)]`` with ``H(t) = 1 + M(t)`` (``M`` the
renewal function of ``C``), and renewal theory gives ``H(t) ≈ t / μ + E[C²] / (2 μ²)``, so

    E[drops] ≈ (T - 1/r) / μ + (σ² + μ²) / (2 μ²),     μ = 1/r + E[D],  σ² = 1/r² + Var D.

Its leading term is the long-run ``T / (1/r + mean downtime)``; the second corrects for the
clients all starting connected. (A plain numpy renewal simulation agrees to 0.01.) When
drops also hit clients that are already down, downtimes stack and the count is the Poisson
``r T`` instead: 50 per client in the issue's example.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from rtsim.core.backoff import Backoff
from rtsim.sim.architecture import ArchitectureParams, run_bulk, simulate_architecture
from rtsim.sim.architecture_world import draw_world
from rtsim.sim.runner import mean_ci, replicate
from rtsim.sim.seeding import children
from rtsim.sim.transports import TransportParams, simulate_transports


def expected_drops(duration_s: float, per_hour: float, down_mean: float, down_var: float) -> float:
    """Expected drops per client in ``[0, duration_s)`` (the module docstring's formula)."""
    up = 3600.0 / per_hour
    mu = up + down_mean
    var = up**2 + down_var
    return (duration_s - up) / mu + (var + mu**2) / (2 * mu**2)


def full_jitter(b: Backoff) -> tuple[float, float]:
    """Mean and variance of the first reconnect delay: uniform on [0, ceiling(0)]."""
    c = b.ceiling(0)
    return c / 2, c**2 / 12


def transport_downtime(p: TransportParams) -> tuple[float, float]:
    """Backoff + setup: 2 × setup RTTs one-way transits of rtt/2 + exponential jitter each."""
    j_mean, j_var = full_jitter(p.backoff)
    legs = 2 * (3 if p.tls else 2)
    jit = p.jitter_ms / 1000
    return j_mean + legs * (p.rtt_ms / 2000 + jit), j_var + legs * jit**2


# The issue's example: `rtsim simulate transports --transport websocket --clients 100
# --rate 10 --duration 5 --reconnects-per-hour 36000 --seed 1`, with the backoff restarting
# on every reconnect (``--stable-after-s 0``): the renewal formula needs i.i.d. downtimes. With
# the default ``stable_after_s`` such short connections are flaps and the delays grow (below).
EXAMPLE = TransportParams(
    transport="websocket",
    clients=100,
    rate=10,
    duration_s=5,
    reconnects_per_hour=36000,
    stable_after_s=0.0,
)
#: r = 10/s (up 0.1 s on average); downtime = U(0, 1 s) full-jitter backoff (0.5 s) + 6
#: transits of 25 ms + Exp(5 ms) (0.18 s): μ = 0.78 s, so 5 / 0.78 = 6.41 in the long run
#: and 6.86 from t = 0 with everyone connected; stacked drops gave r T = 50.
EXAMPLE_RIGHT_VALUE = 6.86


def test_the_issue_example_has_about_7_reconnects_per_client_not_49() -> None:
    right = expected_drops(EXAMPLE.duration_s, 36000, *transport_downtime(EXAMPLE))
    assert right == pytest.approx(EXAMPLE_RIGHT_VALUE, abs=0.01)
    got = simulate_transports(EXAMPLE, seed=1).summary.extra["reconnects"] / EXAMPLE.clients
    # 100 clients: the per-client count has sd ≈ 1, so the mean is within ±0.4 (4 sd).
    assert abs(got - right) < 0.4, got


@pytest.mark.parametrize(
    "params",
    [
        EXAMPLE,
        TransportParams(
            transport="sse",
            clients=50,
            rate=5,
            duration_s=30,
            reconnects_per_hour=3600,
            stable_after_s=0.0,
        ),
        TransportParams(
            transport="websocket",
            clients=50,
            rate=5,
            duration_s=20,
            reconnects_per_hour=7200,
            tls=False,
            backoff=Backoff(base_s=0.25, cap_s=5),
            stable_after_s=0.0,
        ),
    ],
)
def test_transport_reconnects_follow_the_renewal_formula(params: TransportParams) -> None:
    reps = replicate(simulate_transports, params, reps=8, seed=5, progress=False)
    per_client = reps["reconnects"] / params.clients
    mean, half = mean_ci(per_client)
    right = expected_drops(
        params.duration_s, params.reconnects_per_hour, *transport_downtime(params)
    )
    assert abs(mean - right) <= half, (mean, half, right)
    assert abs(mean - right) / right < 0.05
    assert mean < 0.9 * params.reconnects_per_hour / 3600 * params.duration_s  # not stacked


def test_reconnecting_clients_are_not_hit_again_while_down() -> None:
    # With a downtime far longer than the mean up time (10 ms), a client drops at once, then
    # again only after each downtime: about 1 + T / E[D] drops whatever the rate (r T = 500
    # if drops stacked).
    p = EXAMPLE.with_(backoff=Backoff(base_s=4, cap_s=30), reconnects_per_hour=360_000)
    got = simulate_transports(p, seed=2).summary.extra["reconnects"] / p.clients
    right = expected_drops(p.duration_s, p.reconnects_per_hour, *transport_downtime(p))
    assert got < 1 + p.duration_s / 2.0  # mean downtime ≥ 2 s
    assert abs(got - right) < 0.25, (got, right)


def test_flapping_clients_back_off_further_with_the_default_stable_after() -> None:
    # Up 0.1 s on average, far below stable_after_s (5 s): every drop is a flap, so each
    # client's ceilings double (1, 2, 4 … s) and it reconnects fewer times than with the
    # backoff restarting each time; never more than the growing ceilings allow.
    flapping = EXAMPLE.with_(stable_after_s=5.0)
    got = simulate_transports(flapping, seed=1).summary.extra["reconnects"] / EXAMPLE.clients
    reset = simulate_transports(EXAMPLE, seed=1).summary.extra["reconnects"] / EXAMPLE.clients
    assert got < 0.8 * reset, (got, reset)
    # Bound from the growing ceilings: every client starts stable, so the i-th drop (0-based)
    # waits ceiling(i) / 2 on average plus the setup; ignoring the up times, drop i can only
    # happen if the mean downtimes before it fit in the run.
    setup = transport_downtime(EXAMPLE)[0] - full_jitter(EXAMPLE.backoff)[0]
    t, bound = 0.0, 0
    while t < EXAMPLE.duration_s:
        t += EXAMPLE.backoff.ceiling(bound) / 2 + setup
        bound += 1
    assert got <= bound, (got, bound)


ARCH = ArchitectureParams(
    clients=400,
    duration_s=20.0,
    instances=2,
    user_rate=0.5,
    topics=2,
    topic_rate=1.0,
    disconnects_per_hour=3600.0,
    fault_at_s=-1.0,  # random drops only
)


def test_architecture_disconnects_follow_the_renewal_formula() -> None:
    reps = replicate(run_bulk, ARCH, reps=6, seed=9, progress=False)
    mean, half = mean_ci(reps["disconnects"] / ARCH.clients)
    j_mean, j_var = full_jitter(ARCH.backoff)
    right = expected_drops(ARCH.duration_s, ARCH.disconnects_per_hour, j_mean + 3 * 0.05, j_var)
    assert abs(mean - right) <= half, (mean, half, right)
    assert abs(mean - right) / right < 0.05
    assert mean < 0.9 * ARCH.duration_s  # r T = 20 if drops stacked


@pytest.mark.parametrize("mode", ["bulk", "events"])
def test_architecture_outages_never_overlap_and_the_fault_merges(mode: str) -> None:
    p = ARCH.with_(clients=120, duration_s=6.0, disconnects_per_hour=36000, fault_at_s=3.0)
    res = simulate_architecture(p, seed=3, mode=mode)
    w = draw_world(p, np.random.default_rng(children(3, 2)[0])).clients
    assert res.summary.extra["disconnects"] == len(w.out_c)
    for c in range(p.clients):
        mine = w.out_c == c
        s, e = w.out_s[mine], w.out_e[mine]
        assert np.all(s[1:] >= e[:-1]), (c, s, e)  # one outage at a time
        if w.moved[c]:  # down over the restart, whatever else happened
            assert np.any((s <= p.fault_time) & (e >= w.back_at[c]))
    assert res.summary.lost == 0  # Redis Streams replays every outage
    assert not math.isnan(res.summary.p50_ms)
