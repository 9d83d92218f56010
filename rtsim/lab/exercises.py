"""Exercise checks for notebooks 01–07: ``check(exercise_id, answer)``.

Each exercise is a question whose answer comes from one of the lab's models (or, for
notebook 06, from a live server; for notebook 07, from the committed benchmark results).
:func:`check` computes the right value *at check time* from a seeded run and compares the
learner's value with it. The right value is never stored in this module and never printed:
a wrong answer gets a hint (usually which way to move, and what to look at), not the value.

Usage in a notebook::

    from rtsim.lab.exercises import check
    answer = None  # your value
    check("01.1", answer)

prints one line: ``✓ …`` (right), ``✗ …`` with a hint (wrong), or ``… not answered yet``
when ``answer`` is ``None`` or ``...``. :func:`check` also returns ``True``/``False``/``None``
so tests (and the worked solutions) can assert on it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["EXERCISES", "Exercise", "check", "exercises_table"]

#: A judge returns (right?, message). The message never contains the right value.
Judge = Callable[[Any], tuple[bool, str]]


@dataclass(frozen=True)
class Exercise:
    """One exercise: ``id`` ("NN.k", NN the notebook), a one-line question, and its judge.

    ``kind`` is what the answer must be: ``"number"``, ``"int"``, ``"text"`` or
    ``"choice"`` (one of ``choices``).
    """

    id: str
    question: str
    kind: str
    judge: Judge
    choices: tuple[Any, ...] = ()

    @property
    def notebook(self) -> str:
        """The two-digit notebook number this exercise belongs to."""
        return self.id.split(".")[0]


class _WrongType(ValueError):
    pass


def _number(answer: Any) -> float:
    if isinstance(answer, bool) or not isinstance(answer, int | float):
        try:
            import numpy as np

            if isinstance(answer, np.integer | np.floating):
                return float(answer)
        except ImportError:  # pragma: no cover - numpy is a dependency
            pass
        raise _WrongType("a number")
    x = float(answer)
    if not math.isfinite(x):
        raise _WrongType("a finite number")
    return x


def _close(answer: float, truth: float, rel: float, what: str, hint: str) -> tuple[bool, str]:
    """Right within ``rel`` (relative); otherwise say which way, never the value."""
    if abs(answer - truth) <= rel * abs(truth):
        return True, f"{answer:g} {what} is right (within {rel:.0%})."
    way = "too high" if answer > truth else "too low"
    return False, f"{answer:g} {what} is {way}. Hint: {hint}"


# --- 01 · transports ---------------------------------------------------------------------


def _ex_01_1(answer: Any) -> tuple[bool, str]:
    from scipy.optimize import brentq

    from ..sim.theory import long_polling_mean_latency

    a = _number(answer)
    if a <= 0:
        return False, "a rate is positive (messages per second)."
    transit = 0.050
    truth = brentq(lambda r: long_polling_mean_latency(r, transit) / transit - 1.5, 1e-6, 1e4)
    mean = long_polling_mean_latency(a, transit) / transit
    ok, msg = _close(
        a, truth, 0.10, "messages/s", "the mean grows with the rate from 1 transit towards 2."
    )
    return ok, msg if ok else f"{msg} At {a:g}/s the mean is {mean:.2f} transits."


def _ex_01_2(answer: Any) -> tuple[bool, str]:
    from ..core.transport import Transport
    from ..sim.transports import TransportParams, simulate_transports

    a = _number(answer)
    if a <= 0:
        return False, "a poll interval is a positive number of seconds."

    def p50(interval: float) -> float:
        p = TransportParams(
            transport=Transport.POLLING,
            clients=100,
            rate=0.2,
            duration_s=300,
            poll_interval_s=interval,
        )
        return float(simulate_transports(p, seed=7).summary.p50_ms)

    here = p50(a)
    if here >= 1000:
        return False, f"at {a:g} s the p50 is {here:.0f} ms, not under 1 s: poll more often."
    if p50(a * 1.25) < 1000:
        return False, f"{a:g} s keeps p50 under 1 s, but so does a 25% longer interval: poll less."
    return True, f"{a:g} s is right: p50 {here:.0f} ms, and a 25% longer interval is too slow."


def _ex_01_3(answer: Any) -> tuple[bool, str]:
    from . import transports as lab

    a = _number(answer)
    if a != int(a) or a < 1:
        return False, "a number of tabs is a whole number, at least 1."
    n = int(a)
    if n > 64:
        return False, "far fewer: browsers limit HTTP/1.1 connections per origin to a handful."
    served: Any = lab.tabs_table((n, n + 1), seed=0)[("tabs_served_%", "1.1")]
    if served.loc[n] < 100:
        return False, f"with {n} tabs one already receives nothing: fewer."
    if served.loc[n + 1] == 100:
        return False, f"{n + 1} tabs are all still served: more."
    return True, f"{n} is right: tab {n + 1} never opens its stream over HTTP/1.1."


# --- 02 · brokers -------------------------------------------------------------------------


def _ex_02_1(answer: Any) -> tuple[bool, str]:
    from .brokers import loss_table

    a = _number(answer)
    t: Any = loss_table(outage=(10.0, 30.0), rate=50.0, seed=1).set_index("broker")
    truth = float(t.loc["redis-pubsub", "lost"])
    return _close(
        a,
        truth,
        0.05,
        "messages",
        "Pub/Sub keeps nothing for an absent subscriber; count what is published while it is away "
        "(or run loss_table(outage=(10, 30))).",
    )


def _ex_02_2(answer: Any) -> tuple[bool, str]:
    from ..sim.brokers import broker_capacity

    a = _number(answer)
    if a != int(a) or a < 1:
        return False, "a number of subscribed connections is a whole number, at least 1."
    n = int(a)
    below = broker_capacity("redis-pubsub", n) < 100_000
    before = n > 1 and broker_capacity("redis-pubsub", n - 1) < 100_000
    if not below:
        return False, f"with {n} subscribers capacity is still ≥ 100,000 msg/s: more."
    if before:
        return False, f"with {n - 1} subscribers it is already below 100,000 msg/s: fewer."
    return True, f"{n} is right: each subscriber adds its cost to every publish."


# --- 03 · presence ------------------------------------------------------------------------


def _ex_03_1(answer: Any) -> tuple[bool, str]:
    from ..sim.presence import PresenceParams, simulate_presence

    a = _number(answer)
    p = PresenceParams(viewers=40, resources=1, throttle_hz=5, duration_s=60, cursor_pairs=0)
    truth = float(simulate_presence(p, seed=0).summary.extra["cursor_msgs_out_per_s"])
    return _close(
        a, truth, 0.01, "messages/s", "each viewer's update goes to every *other* viewer."
    )


def _ex_03_2(answer: Any) -> tuple[bool, str]:
    from . import presence as lp

    options = (30, 45, 60, 90)
    a = _number(answer)
    if a not in options:
        return False, f"pick one of the timeouts {options} (seconds)."
    i = options.index(int(a))
    pairs = options[max(i - 1, 0) : i + 1]
    t: Any = lp.tradeoff_table(heartbeats=(15,), timeouts=pairs, loss=0.10).set_index("timeout_s")
    if t.loc[int(a), "false_offline_per_hour"] >= 0.1:
        return False, f"T = {int(a)} s flickers too often at 10% loss: a longer timeout."
    if i > 0 and t.loc[options[i - 1], "false_offline_per_hour"] < 0.1:
        return False, f"a shorter timeout ({options[i - 1]} s) also meets the limit."
    return True, f"T = {int(a)} s is right: the shortest timeout that rarely flickers."


def _ex_03_3(answer: Any) -> tuple[bool, str]:
    from . import presence as lp

    a = _number(answer)
    s = lp.store_table(clients=(1_000,), heartbeat_s=15.0)
    truth = 1_000 / float(s["db_utilisation"].iloc[0])
    return _close(
        a,
        truth,
        0.10,
        "clients",
        "utilisation is proportional to clients; run store_table(heartbeat_s=15).",
    )


# --- 04 · conflict resolution ------------------------------------------------------------


def _ex_04_1(answer: Any) -> tuple[bool, str]:
    from ..sim.editing import EditingParams, simulate_editing

    a = _number(answer)
    if not 0 <= a <= 1:
        return False, "a fraction is between 0 and 1 (0.25 means a quarter)."
    p = EditingParams(strategy="lww", editors=5, ops_per_s=3.0, rtt_ms=100, duration_s=20)
    truth = float(simulate_editing(p, seed=4).summary.extra["lost_fraction"])
    if abs(a - truth) <= 0.03:
        return True, f"{a:g} is right (within 3 points)."
    way = "too high" if a > truth else "too low"
    return False, f"{a:g} is {way}. Hint: run conflict.head_to_head with editors=5 (seed 4)."


def _ex_04_2(answer: Any) -> tuple[bool, str]:
    from ..core.ot_puzzles import tp2_counterexample

    if not isinstance(answer, str):
        raise _WrongType("a string")
    r = tp2_counterexample()
    if answer == r.sites["site A"]:
        return True, f"{answer!r} is right; the sites did not converge."
    if answer in r.sites.values():
        return False, "that is the other site's text: read the steps in order."
    return False, "neither site ended with that text: print(*tp2_counterexample().steps)."


def _ex_04_3(answer: Any) -> tuple[bool, str]:
    from ..sim.editing import RecordParams, simulate_records

    a = _number(answer)
    if not 0 <= a <= 1:
        return False, "a fraction is between 0 and 1."
    p = RecordParams(fields=10, users=5, field_skew=1.0, duration_s=600)
    truth = float(simulate_records(p, seed=4).summary.extra["same_field_fraction"])
    if abs(a - truth) <= 0.02:
        return True, f"{a:g} is right (within 2 points)."
    way = "too high" if a > truth else "too low"
    return False, (
        f"{a:g} is {way}. Hint: skewed popularity is not 1/fields; run simulate_records "
        "with field_skew=1.0 (seed 4)."
    )


# --- 05 · architecture --------------------------------------------------------------------


def _small() -> Any:
    from ..sim.architecture import ArchitectureParams

    return ArchitectureParams(clients=2000, duration_s=120, instances=4)


def _ex_05_1(answer: Any) -> tuple[bool, str]:
    from ..sim.architecture import simulate_architecture

    a = _number(answer)
    s = simulate_architecture(
        _small().with_(broker="redis-pubsub", disconnects_per_hour=10), seed=1
    ).summary
    truth = float(s.lost)
    if abs(a - truth) <= max(1.0, 0.05 * truth):
        return True, f"{a:g} messages is right."
    way = "too high" if a > truth else "too low"
    return False, (
        f"{a:g} is {way}. Hint: SMALL.with_(broker='redis-pubsub', disconnects_per_hour=10), "
        "seed 1 — or move the sliders above."
    )


def _ex_05_2(answer: Any) -> tuple[bool, str]:
    from ..sim.architecture import simulate_architecture

    a = _number(answer)
    truth = float(simulate_architecture(_small().with_(instances=1), seed=1).summary.p99_ms)
    return _close(
        a,
        truth,
        0.10,
        "ms",
        "with one instance every client waits for the restart; run SMALL.with_(instances=1), "
        "seed 1, and read summary.p99_ms (milliseconds).",
    )


# --- 06 · live server ---------------------------------------------------------------------


def _live_count(publish: int, since: str, key: str) -> int:
    from ..live import serve_in_background
    from . import live as L

    with serve_in_background(replay_len=50) as srv:
        L.publish_many(srv.url, "exercise", publish)
        return int(L.resume_from(srv.url, "exercise", since)[key])


def _ex_06_1(answer: Any) -> tuple[bool, str]:
    a = _number(answer)
    truth = _live_count(12, "4", "messages")
    if a == truth:
        return True, f"{a:g} is right: everything after id 4."
    way = "too many" if a > truth else "too few"
    return False, f"{a:g} is {way}. Hint: `since` is the last id the client *has*."


def _ex_06_2(answer: Any) -> tuple[bool, str]:
    a = _number(answer)
    truth = _live_count(120, "30", "missed")
    if a == truth:
        return True, f"{a:g} is right: those ids were trimmed before the client came back."
    way = "too many" if a > truth else "too few"
    return False, (
        f"{a:g} is {way}. Hint: the log holds only the newest 50; the gap counts what the "
        "client wanted but the log no longer has."
    )


# --- 07 · simulation vs reality ----------------------------------------------------------


def _ex_07_1(answer: Any) -> tuple[bool, str]:
    from . import compare as cmp
    from .stage_compare import stage_error_table

    options = ("websocket", "sse", "long-polling")
    if answer not in options:
        return False, f"pick one of {options}."
    table = stage_error_table(cmp.load_result("compare_stages"))
    worst = table["worst_p50_error"].groupby(level="transport").max()
    if answer == worst.idxmin():
        return True, f"{answer} is right: its worst p50 error up to 80% load is the smallest."
    return False, "look again at the error table: the smallest worst p50 error over both sizes."


def _ex_07_2(answer: Any) -> tuple[bool, str]:
    import pandas as pd

    from . import compare as cmp

    a = _number(answer)
    mem = pd.DataFrame(cmp.load_result("fanout")["memory"])
    ws: Any = mem[(mem["server"] == "rtsim") & (mem["transport"] == "websocket")]
    truth = float(ws.loc[ws["connections"].idxmax(), "kib_per_connection"])
    return _close(
        a,
        truth,
        0.10,
        "KiB",
        "rtsim's WebSocket row at the largest connection count of the memory table.",
    )


EXERCISES: dict[str, Exercise] = {
    e.id: e
    for e in (
        Exercise(
            "01.1",
            "rate at which long polling's mean is 1.5 transits (T = 50 ms)",
            "number",
            _ex_01_1,
        ),
        Exercise(
            "01.2",
            "longest poll interval with p50 < 1 s (100 clients, 0.2 msg/s)",
            "number",
            _ex_01_2,
        ),
        Exercise("01.3", "SSE tabs one browser keeps open over HTTP/1.1", "int", _ex_01_3),
        Exercise(
            "02.1",
            "messages Redis Pub/Sub loses in a 10 s → 30 s outage at 50 msg/s",
            "number",
            _ex_02_1,
        ),
        Exercise(
            "02.2", "fewest subscribers that put Redis Pub/Sub below 100,000 msg/s", "int", _ex_02_2
        ),
        Exercise(
            "03.1", "cursor messages/s the server sends: 40 viewers at 5 Hz", "number", _ex_03_1
        ),
        Exercise(
            "03.2",
            "shortest timeout with < 0.1 false offline/h at H = 15 s, 10% loss",
            "choice",
            _ex_03_2,
            (30, 45, 60, 90),
        ),
        Exercise(
            "03.3",
            "clients that fill the database's commit capacity at H = 15 s",
            "number",
            _ex_03_3,
        ),
        Exercise(
            "04.1",
            "fraction of characters LWW loses: 5 editors, 3 edits/s, 100 ms",
            "number",
            _ex_04_1,
        ),
        Exercise("04.2", "the TP2 counterexample's site A text", "text", _ex_04_2),
        Exercise(
            "04.3", "same-field share of concurrent edits: 10 fields, skew 1.0", "number", _ex_04_3
        ),
        Exercise(
            "05.1",
            "messages Pub/Sub loses at 10 disconnects per hour (2,000 clients)",
            "number",
            _ex_05_1,
        ),
        Exercise(
            "05.2", "p99 latency with one instance through the restart (ms)", "number", _ex_05_2
        ),
        Exercise("06.1", "messages replayed to since='4' after 12 publishes", "int", _ex_06_1),
        Exercise(
            "06.2",
            "messages the gap reports: log of 50, 120 published, since='30'",
            "int",
            _ex_06_2,
        ),
        Exercise(
            "07.1",
            "transport whose p50 the model predicts best",
            "choice",
            _ex_07_1,
            ("websocket", "sse", "long-polling"),
        ),
        Exercise(
            "07.2", "KiB per idle rtsim WebSocket at the largest count measured", "number", _ex_07_2
        ),
    )
}


def check(exercise_id: str, answer: Any) -> bool | None:
    """Check ``answer`` for exercise ``exercise_id`` (e.g. ``"01.1"``) and print one line.

    Prints ``✓ …`` and returns ``True`` when right; ``✗ …`` with a hint and returns
    ``False`` when wrong (or of the wrong type: a number, a whole number, a string or one of
    the offered choices, as the exercise says); ``… not answered yet`` and returns ``None``
    when ``answer`` is ``None`` or ``...``. The right value is computed now, from the same
    seeded model run (or live server, or committed result) the notebook uses; it is never
    printed. Raises ``KeyError`` for an unknown exercise id.
    """
    ex = EXERCISES[exercise_id]
    if answer is None or answer is Ellipsis:
        print(f"… exercise {exercise_id}: not answered yet (set your value, then run this cell).")
        return None
    try:
        ok, msg = ex.judge(answer)
    except _WrongType as exc:
        ok, msg = False, f"the answer should be {exc}, not {type(answer).__name__}."
    print(f"{'✓' if ok else '✗'} exercise {exercise_id}: {msg}")
    return ok


def exercises_table() -> Any:
    """One row per exercise: ``id``, ``notebook`` (two digits), ``question`` (a DataFrame)."""
    import pandas as pd

    return pd.DataFrame(
        [{"id": e.id, "notebook": e.notebook, "question": e.question} for e in EXERCISES.values()]
    )
