"""One palette for every plot in ``rtsim.lab``: a colour per transport, broker and strategy.

Keys are the string values of :class:`rtsim.core.transport.Transport`,
:class:`rtsim.sim.brokers.Broker` and the conflict strategies, so a transport (or broker)
has the same colour in every notebook. Colours are matplotlib named colours (Tableau 10).
"""

from __future__ import annotations

from typing import Any

from ..core.transport import Transport

__all__ = [
    "BROKER_COLORS",
    "REFERENCE",
    "STRATEGY_COLORS",
    "TRANSPORT_COLORS",
    "color",
    "legend_outside",
    "log_ticks",
]

#: One colour per transport (``Transport`` values).
TRANSPORT_COLORS: dict[str, str] = {
    Transport.WEBSOCKET.value: "tab:blue",
    Transport.SSE.value: "tab:green",
    Transport.LONG_POLLING.value: "tab:orange",
    Transport.POLLING.value: "tab:red",
}
#: One colour per broker (``rtsim.sim.brokers.Broker`` values); distinct from the transports'.
BROKER_COLORS: dict[str, str] = {
    "redis-pubsub": "tab:purple",
    "redis-streams": "tab:brown",
    "jetstream": "tab:cyan",
    "kafka": "tab:olive",
}
#: One colour per conflict-resolution strategy.
STRATEGY_COLORS: dict[str, str] = {"ot": "tab:blue", "crdt": "tab:green", "lww": "tab:red"}
#: Reference lines (targets, capacities, closed forms' bounds): always labelled.
REFERENCE = "grey"


def color(key: Any) -> str:
    """The colour of a transport, broker or strategy (enum or its value); grey if unknown."""
    k = str(getattr(key, "value", key))
    return TRANSPORT_COLORS.get(k) or BROKER_COLORS.get(k) or STRATEGY_COLORS.get(k) or "grey"


def legend_outside(ax: Any, **kwargs: Any) -> Any:
    """Put ``ax``'s legend to the right of the plot, off the data; returns the legend."""
    return ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, **kwargs)


def log_ticks(ax: Any, values: Any, axis: str = "x") -> None:
    """Label a log ``axis`` of ``ax`` only at ``values`` (the data's own points), in plain
    numbers (``2``, ``60``, ``1,000``), with no minor-tick labels.

    matplotlib labels some minor ticks of a log axis spanning under two decades
    (``2×10⁰ 3×10⁰ …``) and they run into each other; this keeps one readable label per
    point. ``values``: a sequence of positive numbers; ``axis``: ``"x"`` or ``"y"``.
    Raises ``ValueError`` for another ``axis``.
    """
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    if axis not in ("x", "y"):
        raise ValueError(f"axis must be 'x' or 'y', not {axis!r}")
    a = ax.xaxis if axis == "x" else ax.yaxis
    ticks = sorted({float(v) for v in values})
    a.set_major_locator(FixedLocator(ticks))
    a.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.10g}"))
    a.set_minor_formatter(NullFormatter())
