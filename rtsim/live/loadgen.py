"""Moved to :mod:`rtsim.live.clients.loadgen`; this alias stays until every caller moves."""

from .clients.loadgen import LoadParams, capacity_search, run_load

__all__ = ["LoadParams", "capacity_search", "run_load"]
