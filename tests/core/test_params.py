import math
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtsim.core.params import Spec, check, defaults_table, param, slider_range, sources, validate


@dataclass(frozen=True)
class P:
    loss: float = param(0.0, lo=0, hi=1, hi_open=True, unit="probability", source="none lost")
    clients: int = param(10, lo=1, help="clients")
    rate: float = param(1.0, lo=0, lo_open=True, unit="1/s")
    mode: str = param("a", choices=("a", "b"))
    cap: float = param(math.inf, lo=0, lo_open=True, inf_ok=True)
    at: float | None = param(None, kind="float", optional=True)

    def __post_init__(self) -> None:
        validate(self)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"loss": 1.5}, "loss must be in [0, 1), got 1.5"),
        ({"loss": 1.0}, "loss must be in [0, 1), got 1.0"),
        ({"loss": -0.1}, "loss must be in [0, 1), got -0.1"),
        ({"rate": 0}, "rate must be > 0, got 0"),
        ({"rate": math.inf}, "rate must be finite, got inf"),
        ({"rate": math.nan}, "rate must be finite, got nan"),
        ({"rate": True}, "rate must be a number, got True"),
        ({"rate": "3"}, "rate must be a number, got '3'"),
        ({"clients": 0}, "clients must be >= 1, got 0"),
        ({"clients": 2.5}, "clients must be a whole number, got 2.5"),
        ({"mode": "c"}, "mode must be one of a, b; got 'c'"),
        ({"cap": 0}, "cap must be > 0, got 0"),
        ({"at": math.inf}, "at must be finite, got inf"),
    ],
)
def test_validate_names_the_field_and_the_bound(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as exc:
        P(**changes)  # type: ignore[arg-type]
    assert str(exc.value) == message


def test_sentinels_and_whole_floats_are_accepted() -> None:
    p = P(cap=math.inf, at=None, clients=3.0)  # type: ignore[arg-type]
    assert p.cap == math.inf and p.at is None
    assert p.clients == 3 and isinstance(p.clients, int)


def test_a_default_that_breaks_its_own_bounds_is_refused() -> None:
    with pytest.raises(ValueError, match="default must be >= 1, got 0"):
        param(0, lo=1)
    with pytest.raises(ValueError, match="lo"):
        param(1.0, lo=2, hi=1)


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_check_agrees_with_the_bounds(x: float) -> None:
    spec = Spec(lo=0, hi=1, hi_open=True)
    ok = math.isfinite(x) and 0 <= x < 1
    assert (check(x, spec) is None) == ok


@given(st.integers(-5, 5), st.booleans(), st.booleans())
def test_open_ends_exclude_the_bound(x: int, lo_open: bool, hi_open: bool) -> None:
    spec = Spec(kind="int", lo=-2, hi=2, lo_open=lo_open, hi_open=hi_open)
    ok = (x > -2 if lo_open else x >= -2) and (x < 2 if hi_open else x <= 2)
    assert (check(x, spec) is None) == ok
    if not ok:
        assert (spec.bounds_text()[0] == "(") == lo_open
        assert (spec.bounds_text()[-1] == ")") == hi_open


def test_sources_and_defaults_table_come_from_the_metadata() -> None:
    assert sources(P) == {"loss": "none lost"}
    rows = {r["parameter"]: r for r in defaults_table(P)}
    assert set(rows) == {"loss", "clients", "rate", "mode", "cap", "at"}
    assert rows["loss"]["bounds"] == "[0, 1)" and rows["loss"]["unit"] == "probability"
    assert rows["mode"]["bounds"] == "a, b" and rows["clients"]["default"] == 10


def test_slider_range_is_clipped_to_the_bounds() -> None:
    assert slider_range(P, "clients", 0, 50) == (1.0, 50.0)
    lo, hi = slider_range(P, "loss", 0, 5)
    assert lo == 0 and hi < 1
    with pytest.raises(ValueError, match="not a declared"):
        slider_range(P, "nope", 0, 1)
    with pytest.raises(ValueError, match="bound"):
        slider_range(P, "at")


def test_every_model_declares_its_fields() -> None:
    from rtsim.sim.architecture import ArchitectureParams
    from rtsim.sim.brokers import BrokerParams
    from rtsim.sim.editing import EditingParams, RecordParams
    from rtsim.sim.presence import PresenceParams
    from rtsim.sim.reconnect import FallbackParams, StormParams
    from rtsim.sim.transports import TransportParams

    for cls in (
        ArchitectureParams,
        BrokerParams,
        EditingParams,
        RecordParams,
        PresenceParams,
        FallbackParams,
        StormParams,
        TransportParams,
    ):
        cls()  # the defaults pass their own validation
        rows = defaults_table(cls)
        assert rows and all(r["meaning"] for r in rows), cls.__name__


def test_reconnect_params_refuse_infinity() -> None:
    from rtsim.sim.reconnect import StormParams

    with pytest.raises(ValueError, match="outage_s must be finite, got inf"):
        StormParams(outage_s=math.inf)


def test_strict_json() -> None:
    import json

    import numpy as np

    from rtsim.core.strictjson import dumps

    text = dumps({"a": math.nan, "b": [np.float64(1.5), np.int64(2), -math.inf], "c": np.bool_(1)})
    assert json.loads(text) == {"a": None, "b": [1.5, 2, None], "c": True}
