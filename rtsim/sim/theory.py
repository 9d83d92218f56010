"""Closed forms the models are checked against."""

from __future__ import annotations

import math

__all__ = [
    "erlang_c",
    "long_polling_mean_latency",
    "md1_sojourn",
    "mm1_sojourn",
    "mmc_sojourn",
]


def long_polling_mean_latency(rate: float, transit_s: float) -> float:
    """Mean delivery latency of long polling with Poisson arrivals (RFC 6202 §2.2).

    Assumes a fixed one-way transit ``T``, no server time and no hold timeout. A response
    leaves, the client receives it after ``T`` and its next request reaches the server ``T``
    later; messages arriving in that ``2T`` window wait for the request and are received
    ``T`` after it (latency uniform on ``[T, 3T]``, mean ``2T``). If no message arrived, the
    request waits and the next message goes out at once (latency ``T``). Per cycle, the
    expected number of messages is ``2λT + e^{-2λT}``, so the mean is

        (2λT · 2T + e^{-2λT} · T) / (2λT + e^{-2λT}).

    Low rates tend to one transit, high rates to two, and no message waits more than three.
    """
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"rate must be > 0, got {rate}")
    if not (math.isfinite(transit_s) and transit_s > 0):
        raise ValueError(f"transit_s must be > 0, got {transit_s}")
    a = 2 * rate * transit_s
    idle = math.exp(-a)
    return (a * 2 * transit_s + idle * transit_s) / (a + idle)


def _check_rates(arrival_rate: float, service_rate: float, servers: int) -> None:
    if not (math.isfinite(arrival_rate) and arrival_rate > 0):
        raise ValueError(f"arrival_rate must be > 0, got {arrival_rate}")
    if not (math.isfinite(service_rate) and service_rate > 0):
        raise ValueError(f"service_rate must be > 0, got {service_rate}")
    if servers < 1:
        raise ValueError(f"servers must be >= 1, got {servers}")
    if arrival_rate >= servers * service_rate:
        raise ValueError(
            f"the queue is unstable: arrival rate {arrival_rate} >= capacity"
            f" {servers} x {service_rate}; lower the load below 1"
        )


def erlang_c(servers: int, offered_load: float) -> float:
    """Probability that an arrival waits in an M/M/c queue (Erlang C), ``a = λ/μ < c``.

    Computed with the numerically stable Erlang B recursion, ``C = B / (1 − ρ(1 − B))``.
    """
    if servers < 1:
        raise ValueError(f"servers must be >= 1, got {servers}")
    if not (0 < offered_load < servers):
        raise ValueError(f"offered load must be in (0, servers={servers}), got {offered_load}")
    b = 1.0
    for k in range(1, servers + 1):
        b = offered_load * b / (k + offered_load * b)
    rho = offered_load / servers
    return b / (1 - rho * (1 - b))


def mm1_sojourn(arrival_rate: float, service_rate: float) -> float:
    """Mean time in system of an M/M/1 queue: ``1 / (μ − λ)``."""
    _check_rates(arrival_rate, service_rate, 1)
    return 1.0 / (service_rate - arrival_rate)


def mmc_sojourn(arrival_rate: float, service_rate: float, servers: int) -> float:
    """Mean time in system of an M/M/c queue: ``C(c, a) / (cμ − λ) + 1/μ`` (Erlang C)."""
    _check_rates(arrival_rate, service_rate, servers)
    a = arrival_rate / service_rate
    return erlang_c(servers, a) / (servers * service_rate - arrival_rate) + 1.0 / service_rate


def md1_sojourn(arrival_rate: float, service_s: float) -> float:
    """Mean time in system of an M/D/1 queue (Pollaczek–Khinchine): ``D + ρD / (2(1 − ρ))``."""
    if not (math.isfinite(service_s) and service_s > 0):
        raise ValueError(f"service_s must be > 0, got {service_s}")
    _check_rates(arrival_rate, 1.0 / service_s, 1)
    rho = arrival_rate * service_s
    return service_s + rho * service_s / (2 * (1 - rho))
