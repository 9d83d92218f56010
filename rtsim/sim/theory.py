"""Closed forms the models are checked against."""

from __future__ import annotations

import math

__all__ = ["long_polling_mean_latency"]


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
