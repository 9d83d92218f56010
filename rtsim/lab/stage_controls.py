"""Notebook 07's live controls: the stage model beside a small live run, on demand.

:func:`small_stage_comparison` starts a fresh ``rtsim serve`` (per-address limits lifted:
:data:`rtsim.lab.stage_compare.SERVER_ARGS`), calibrates the stage model on it for the
chosen transport — once per transport and Python session, since the calibration measures
the machine, not the server (:func:`rtsim.lab.stage_compare.calibrate_stage_model` with
that transport only: the wake-up probe, two short CPU runs per transport, the WebSocket
runs of the warm-up law and the traced WebSocket run, about a minute on 2 cores) — then
simulates and measures one point with :func:`rtsim.lab.stage_compare.compare_stage_model`.
:func:`stage_comparison_controls` puts that behind a transport menu and two sliders.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..core.transport import Transport, parse_transport
from ..sim.stages import StageCalibration
from .stage_compare import calibrate_stage_model, compare_stage_model, stage_server

__all__ = [
    "calibration_for",
    "forget_calibrations",
    "small_stage_comparison",
    "stage_comparison_controls",
]

#: Calibrations made in this Python session, by transport (see the module docstring).
_CALIBRATIONS: dict[Transport, tuple[StageCalibration, dict[str, Any]]] = {}


def calibration_for(
    transport: Transport | str, url: str, pid: int
) -> tuple[StageCalibration, dict[str, Any]]:
    """This session's stage calibration covering ``transport``, made against the server at
    ``url`` (process ``pid``) the first time it is asked for. Returns what
    :func:`~rtsim.lab.stage_compare.calibrate_stage_model` returns. Raises ``ValueError``
    for an unknown transport."""
    t = parse_transport(transport)
    if t not in _CALIBRATIONS:
        _CALIBRATIONS[t] = calibrate_stage_model(url, pid, duration_s=2.0, transports=(t,))
    return _CALIBRATIONS[t]


def forget_calibrations() -> None:
    """Drop this session's calibrations (the next comparison measures the machine again)."""
    _CALIBRATIONS.clear()


def small_stage_comparison(
    transport: Transport | str = "websocket",
    subscribers: int = 100,
    load: float = 0.5,
    duration_s: float = 2.0,
    repeats: int = 1,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One point, simulated by the stage model and measured live on a fresh server.

    ``load`` is a fraction of the model's capacity for that transport and size (as in the
    committed sweep), ``duration_s`` seconds per live run, ``repeats`` runs (their mean
    and 95% CI). Returns (rows, stages) of
    :func:`~rtsim.lab.stage_compare.compare_stage_model`, rows as a DataFrame. Raises
    ``ValueError`` for a load outside (0, 1.5), ``subscribers`` < 1 or an unknown
    transport; ``RuntimeError`` if the server does not start.
    """
    t = parse_transport(transport)
    if subscribers < 1:
        raise ValueError(f"subscribers must be >= 1, got {subscribers}")
    if not 0 < load < 1.5:
        raise ValueError(f"load must be in (0, 1.5), got {load}")
    with stage_server() as (url, pid):
        scal, _info = calibration_for(t, url, pid)
        rows, stages = compare_stage_model(
            url, pid, scal, t, [load], subscribers, repeats, duration_s, seed
        )
    return pd.DataFrame(rows), stages


def stage_comparison_controls(
    rows: pd.DataFrame | None = None, stages: dict[str, Any] | None = None
) -> Any:
    """Widgets for notebook 07: transport, subscribers (50–1,000) and load (10–90%); each
    change reruns :func:`small_stage_comparison` (one 2 s run; the first run of a
    transport also calibrates) and shows the table and the stage waterfall.

    ``rows`` and ``stages``: a comparison already made (what :func:`small_stage_comparison`
    returned). The controls then start at its transport, subscribers and load and show it
    as it is, instead of measuring that point again; every change measures anew.

    Returns an ``ipywidgets.interactive``; sliders send their value on release only.
    """
    import ipywidgets as w
    import matplotlib.pyplot as plt
    from IPython.display import display

    from .stage_compare import stage_waterfall

    start: dict[str, Any] = {"transport": "websocket", "subscribers": 100, "load": 0.5}
    made: dict[tuple[Any, ...], tuple[pd.DataFrame, dict[str, Any]]] = {}
    if rows is not None and stages is not None:
        first = rows.iloc[0]
        start = {
            "transport": str(first["transport"]),
            "subscribers": int(first["subscribers"]),
            "load": float(first["load"]),
        }
        made[tuple(start.values())] = (rows, stages)

    def show(transport: str, subscribers: int, load: float) -> None:
        # The comparison passed in is shown once, at the start; a change measures anew.
        key = (transport, subscribers, load)
        table, by_stage = made.pop(key) if key in made else small_stage_comparison(*key)
        cols = ["transport", "subscribers", "rate", "metric", "simulated", "measured"]
        display(table[[*cols, "rel_error", "lost"]].round(3))  # type: ignore[no-untyped-call]
        stage_waterfall({"stages": by_stage}, next(iter(by_stage)))
        plt.show()

    return w.interactive(
        show,
        transport=w.Dropdown(
            options=[t.value for t in (Transport.WEBSOCKET, Transport.SSE, Transport.LONG_POLLING)],
            value=start["transport"],
        ),
        subscribers=w.IntSlider(
            value=start["subscribers"],
            min=50,
            max=1000,
            step=50,
            continuous_update=False,
            description="subscribers",
        ),
        load=w.FloatSlider(
            value=start["load"],
            min=0.1,
            max=0.9,
            step=0.1,
            continuous_update=False,
            description="load",
        ),
    )
