"""A scenario file: your own numbers for the architecture model (``rtsim plan``).

A scenario is a TOML file (read with the standard library's :mod:`tomllib`) whose schema
is declared once here, as frozen dataclasses whose fields carry
:func:`~rtsim.core.params.param` metadata (bounds, unit, help, default). The loader, the
error messages, ``docs/scenarios.md`` and the sliders of notebook 08 all read those
declarations. :func:`load_scenario` raises :class:`ScenarioError` (a ``ValueError``) with
ONE line naming the field by its dotted path and the rule it breaks, e.g.
``rooms.team.size must be >= 2, got 1``.

:meth:`Scenario.to_params` maps a scenario onto
:class:`~rtsim.sim.architecture_params.ArchitectureParams`; the mapping and what the model
does not represent are listed in its docstring and in ``docs/scenarios.md``.

Sans-I/O apart from :func:`load_scenario` reading the file it is given (or a packaged
example by name: :func:`example_names`).
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..core.broker import Broker
from ..core.params import Spec, check, param, specs, validate
from ..core.transport import Transport
from .architecture_params import ArchitectureParams

__all__ = [
    "SECTIONS",
    "Broadcast",
    "BrokerSection",
    "Disconnects",
    "Instances",
    "Network",
    "Peak",
    "RoomKind",
    "Scenario",
    "ScenarioError",
    "Targets",
    "Transports",
    "UserChannel",
    "Users",
    "example_names",
    "example_path",
    "load_scenario",
    "parse_scenario",
]


class ScenarioError(ValueError):
    """An invalid scenario: one line naming the field (dotted path) and the rule."""


# --- the schema ---------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Users:
    """``[users]``: who is connected at the peak."""

    count: int = param(kind="int", lo=1, unit="users", help="registered users")
    online_share: float = param(
        1.0, lo=0, hi=1, lo_open=True, unit="fraction", help="share of users online at the peak"
    )
    connections_per_user: float = param(
        1.0, lo=1, unit="connections", help="open connections (tabs, devices) per online user"
    )

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True, kw_only=True)
class Peak:
    """``[peak]``: the busiest window, which the plan simulates."""

    rate_factor: float = param(
        1.0, lo=0, lo_open=True, unit="×", help="publish rates at the peak ÷ the rates given"
    )
    duration_s: float = param(
        600.0,
        lo=1,
        unit="s",
        help="length of the peak window (the plan may simulate a shorter part; it says so)",
    )

    def __post_init__(self) -> None:
        validate(self)


_FALLBACKS = (Transport.SSE.value, Transport.LONG_POLLING.value)


@dataclass(frozen=True, kw_only=True)
class Transports:
    """``[transports]``: share of clients per transport (must sum to 1), and proxies."""

    websocket: float = param(1.0, lo=0, hi=1, unit="fraction", help="clients on WebSocket")
    sse: float = param(0.0, lo=0, hi=1, unit="fraction", help="clients on SSE")
    long_polling: float = param(0.0, lo=0, hi=1, unit="fraction", help="clients on long polling")
    proxied: float = param(
        0.0,
        lo=0,
        hi=1,
        unit="fraction",
        help="share of WebSocket clients behind proxies that block it (they use the fallback)",
    )
    proxy_fallback: str = param(
        Transport.SSE.value, choices=_FALLBACKS, help="what proxied clients fall back to"
    )

    def __post_init__(self) -> None:
        validate(self)
        total = self.websocket + self.sse + self.long_polling
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"shares must sum to 1, got {total:g}")

    def effective(self) -> dict[Transport, float]:
        """Share of clients per transport after proxies force their fallback."""
        moved = self.websocket * self.proxied
        out = {
            Transport.WEBSOCKET: self.websocket - moved,
            Transport.SSE: self.sse,
            Transport.LONG_POLLING: self.long_polling,
        }
        out[Transport(self.proxy_fallback)] += moved
        return out


@dataclass(frozen=True, kw_only=True)
class UserChannel:
    """``[user_channel]``: the per-user channel (``user:<id>``, notifications)."""

    rate: float = param(0.0, lo=0, unit="msg/s", help="messages per user channel per second")
    payload_bytes: int = param(200, lo=0, unit="B", help="payload of one message")

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True, kw_only=True)
class RoomKind:
    """``[rooms.NAME]``: rooms (teams, chats) of one size; a client is in ``per_client``."""

    size: int = param(kind="int", lo=2, unit="members", help="members (connections) per room")
    per_client: float = param(
        1.0, lo=0, lo_open=True, unit="rooms", help="rooms of this kind each client is in"
    )
    rate: float = param(0.0, lo=0, unit="msg/s", help="messages per room per second")
    typing_rate: float = param(
        0.0, lo=0, unit="1/s", help="typing indicators per member per second (sent to the room)"
    )
    presence_per_hour: float = param(
        0.0, lo=0, unit="1/h", help="presence changes per member per hour (sent to the room)"
    )
    payload_bytes: int = param(200, lo=0, unit="B", help="payload of one message")

    def __post_init__(self) -> None:
        validate(self)

    @property
    def room_rate(self) -> float:
        """Messages per room per second: chat + typing + presence (msg/s)."""
        return self.rate + self.size * (self.typing_rate + self.presence_per_hour / 3600.0)


@dataclass(frozen=True, kw_only=True)
class Broadcast:
    """``[broadcast]``: channels every client follows (dashboards, announcements)."""

    channels: int = param(0, lo=0, unit="channels", help="broadcast channels")
    rate: float = param(0.0, lo=0, unit="msg/s", help="messages per broadcast channel per second")
    payload_bytes: int = param(200, lo=0, unit="B", help="payload of one message")

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True, kw_only=True)
class Disconnects:
    """``[disconnects]``: random drops and an optional instance restart."""

    per_hour: float = param(
        1.0, lo=0, unit="1/h", help="random disconnects per client per hour (mobile networks)"
    )
    instance_restart: bool = param(
        False, help="restart instance 0 half-way through the window (clients move, then replay)"
    )

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True, kw_only=True)
class BrokerSection:
    """``[broker]``: the message broker between instances."""

    name: str = param(
        Broker.REDIS_STREAMS.value,
        choices=tuple(b.value for b in Broker),
        help="message broker (rtsim.core.broker.Broker)",
    )
    max_len: int = param(100_000, lo=1, unit="entries", help="stream history kept (replay)")

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True, kw_only=True)
class Instances:
    """``[instances]``: real-time server instances (one core each) and their limits."""

    count: int = param(4, lo=1, hi=1000, unit="instances", help="instances (one core each)")
    max_connections: int = param(
        50_000, lo=1, unit="connections", help="connections one instance may hold"
    )
    memory_mib: float = param(
        4096.0, lo=0, lo_open=True, unit="MiB", help="memory one instance may use"
    )
    max_utilisation: float = param(
        0.8,
        lo=0,
        hi=1,
        lo_open=True,
        unit="fraction",
        help="CPU busy share allowed (instance, broker)",
    )

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True, kw_only=True)
class Network:
    """``[network]``: the clients' path to the servers."""

    rtt_ms: float = param(50.0, lo=0, unit="ms", help="client round trip")
    jitter_ms: float = param(5.0, lo=0, unit="ms", help="mean exponential one-way jitter")

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True, kw_only=True)
class Targets:
    """``[targets]``: publish-to-receive latency targets (the article's 50 / 500 ms)."""

    p50_ms: float = param(50.0, lo=0, lo_open=True, unit="ms", help="median latency target")
    p99_ms: float = param(500.0, lo=0, lo_open=True, unit="ms", help="99th percentile target")

    def __post_init__(self) -> None:
        validate(self)


#: Top-level tables: name → section class (``rooms`` is a table of :class:`RoomKind`).
SECTIONS: dict[str, type] = {
    "users": Users,
    "peak": Peak,
    "transports": Transports,
    "user_channel": UserChannel,
    "rooms": RoomKind,
    "broadcast": Broadcast,
    "disconnects": Disconnects,
    "broker": BrokerSection,
    "instances": Instances,
    "network": Network,
    "targets": Targets,
}
_STRINGS = ("name", "description")


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """A whole scenario. Only ``users.count`` is required; everything else has a default
    (declared on its section's fields). Something must be published."""

    name: str = "scenario"
    description: str = ""
    users: Users
    peak: Peak = field(default_factory=Peak)
    transports: Transports = field(default_factory=Transports)
    user_channel: UserChannel = field(default_factory=UserChannel)
    rooms: dict[str, RoomKind] = field(default_factory=dict)
    broadcast: Broadcast = field(default_factory=Broadcast)
    disconnects: Disconnects = field(default_factory=Disconnects)
    broker: BrokerSection = field(default_factory=BrokerSection)
    instances: Instances = field(default_factory=Instances)
    network: Network = field(default_factory=Network)
    targets: Targets = field(default_factory=Targets)

    def __post_init__(self) -> None:
        if self.clients < 1:
            raise ScenarioError(
                f"users: {self.users.count} users × {self.users.online_share:g} online"
                " is less than one connection"
            )
        if self.published_per_s() <= 0:
            raise ScenarioError(
                "nothing is published: give user_channel.rate, a rooms.NAME.rate (or typing,"
                " presence) or broadcast.channels and broadcast.rate"
            )
        for name, kind in self.rooms.items():
            if kind.size > self.clients:
                raise ScenarioError(
                    f"rooms.{name}.size must not exceed the connections at the peak"
                    f" ({self.clients:,}), got {kind.size:,}"
                )

    # --- derived figures ------------------------------------------------------------------
    @property
    def clients(self) -> int:
        """Connections at the peak: users × online share × connections per user."""
        u = self.users
        return round(u.count * u.online_share * u.connections_per_user)

    def deliveries_per_client(self) -> dict[str, float]:
        """Messages per second each client receives, per kind of channel (peak rates)."""
        f = self.peak.rate_factor
        out = {"user": self.user_channel.rate * f}
        for name, k in self.rooms.items():
            out[f"rooms.{name}"] = k.per_client * k.room_rate * f
        out["broadcast"] = self.broadcast.channels * self.broadcast.rate * f
        return out

    def published_per_s(self) -> float:
        """Messages per second the application publishes (true layout, at the peak)."""
        f, n = self.peak.rate_factor, self.clients
        users_online = self.users.count * self.users.online_share
        rooms = sum(n * k.per_client / k.size * k.room_rate for k in self.rooms.values())
        return f * (
            users_online * self.user_channel.rate
            + rooms
            + self.broadcast.channels * self.broadcast.rate
        )

    def mean_payload_bytes(self) -> float:
        """Payload per delivery, weighted by each kind's deliveries (B)."""
        d = self.deliveries_per_client()
        sizes = {"user": self.user_channel.payload_bytes, "broadcast": self.broadcast.payload_bytes}
        sizes.update({f"rooms.{k}": r.payload_bytes for k, r in self.rooms.items()})
        total = sum(d.values())
        return sum(d[k] * sizes[k] for k in d) / total if total > 0 else 0.0

    def room_layout(self) -> tuple[int, float]:
        """The model's ``(topics, topic_rate)``: all room kinds merged (:meth:`to_params`)."""
        f, n = self.peak.rate_factor, self.clients
        per = [(k.per_client * k.room_rate * f, k.size) for k in self.rooms.values()]
        rate = sum(d for d, _ in per)
        if rate <= 0:
            return 0, 0.0
        size = sum(d * s for d, s in per) / rate  # delivery-weighted room size
        topics = max(1, min(n, round(n / size)))
        return topics, rate

    def to_params(self, **overrides: Any) -> ArchitectureParams:
        """The scenario as :class:`ArchitectureParams`; ``overrides`` replace model fields.

        Mapping (all rates at the peak, i.e. × ``peak.rate_factor``):

        - ``clients`` = ``users.count × online_share × connections_per_user``; every
          connection is one model client with its own user channel at ``user_channel.rate``
          (a user with several connections is several clients: deliveries are right, the
          broker's publishes are overstated by ``connections_per_user``);
        - all ``rooms`` kinds are merged into one set of equal rooms: each client follows
          one, at the sum of its rooms' delivery rates (``per_client × room_rate``, where
          ``room_rate`` adds typing and presence), with the delivery-weighted mean room size
          (``topics = clients / size``). Deliveries per client are exact; fan-out per
          message is the weighted mean;
        - ``broadcast``: one channel every client follows at ``channels × rate``;
        - ``broker``, ``max_len``, ``instances``, ``rtt_ms``, ``jitter_ms``,
          ``disconnects_per_hour`` map one to one; the instance restart is scripted only if
          ``disconnects.instance_restart``; ``duration_s`` = ``peak.duration_s``.

        The transport mix, memory and bandwidth are not in the model: ``rtsim.lab.plan``
        charges the mix as CPU per delivery (``cpu_write_us``) and computes memory and
        bytes beside the model. Raises ``ValueError`` for an override the model refuses.
        """
        topics, topic_rate = self.room_layout()
        d = self.deliveries_per_client()
        kw: dict[str, Any] = {
            "clients": self.clients,
            "duration_s": self.peak.duration_s,
            "broker": self.broker.name,
            "instances": self.instances.count,
            "user_rate": d["user"],
            "topics": topics,
            "topic_rate": topic_rate,
            "broadcast_rate": d["broadcast"],
            "rtt_ms": self.network.rtt_ms,
            "jitter_ms": self.network.jitter_ms,
            "disconnects_per_hour": self.disconnects.per_hour,
            "fault_at_s": None if self.disconnects.instance_restart else -1.0,
            "max_len": self.broker.max_len,
        }
        kw.update(overrides)
        return ArchitectureParams(**kw)

    def as_dict(self) -> dict[str, Any]:
        """The scenario as plain data (the TOML's shape, defaults filled in)."""
        return dataclasses.asdict(self)


# --- loading --------------------------------------------------------------------------------
def _section(cls: type, table: Any, path: str) -> Any:
    """Build section ``cls`` from a TOML table, naming ``path.field`` in every error."""
    if not isinstance(table, dict):
        raise ScenarioError(f"{path} must be a table ([{path}]), got {table!r}")
    declared = {f.name: s for f, s in specs(cls)}
    for key in table:
        if key not in declared:
            raise ScenarioError(
                f"{path}.{key} is not a field of [{path}]; expected one of {', '.join(declared)}"
            )
    kw: dict[str, Any] = {}
    for f, spec in specs(cls):
        where = f"{path}.{f.name}"
        if f.name not in table:
            if f.default is dataclasses.MISSING:
                raise ScenarioError(f"{where} is missing (required: {spec.help}, {spec.unit})")
            continue
        kw[f.name] = _value(table[f.name], spec, where)
    try:
        return cls(**kw)
    except ValueError as exc:
        raise ScenarioError(f"{path}: {exc}") from None


def _value(v: Any, spec: Spec, where: str) -> Any:
    unit = f" in {spec.unit}" if spec.unit and spec.kind in ("int", "float") else ""
    if spec.kind in ("int", "float") and (
        isinstance(v, str | bool) or not isinstance(v, int | float)
    ):
        raise ScenarioError(f"{where} must be a number{unit}, got {v!r}")
    reason = check(v, spec)
    if reason is not None:
        raise ScenarioError(f"{where} {reason}" + (f" (unit: {spec.unit})" if unit else ""))
    return v


def parse_scenario(data: dict[str, Any], name: str = "scenario") -> Scenario:
    """Build a :class:`Scenario` from parsed TOML; :class:`ScenarioError` (one line) if bad."""
    allowed = (*_STRINGS, *SECTIONS)
    for key in data:
        if key not in allowed:
            raise ScenarioError(
                f"{key} is not a top-level key of a scenario; expected one of {', '.join(allowed)}"
            )
    for key in _STRINGS:
        if key in data and not isinstance(data[key], str):
            raise ScenarioError(f"{key} must be a string, got {data[key]!r}")
    if "users" not in data:
        raise ScenarioError("users is missing (required: the [users] table with count)")
    kw: dict[str, Any] = {
        "name": data.get("name", name),
        "description": data.get("description", ""),
    }
    for key, cls in SECTIONS.items():
        if key not in data:
            continue
        if key == "rooms":
            rooms = data["rooms"]
            if not isinstance(rooms, dict):
                raise ScenarioError(f"rooms must be tables [rooms.NAME], got {rooms!r}")
            kw["rooms"] = {n: _section(RoomKind, t, f"rooms.{n}") for n, t in rooms.items()}
        else:
            kw[key] = _section(cls, data[key], key)
    return Scenario(**kw)


_EXAMPLES = "data/scenarios"


def example_names() -> list[str]:
    """Names of the scenarios packaged with rtsim (``rtsim plan chat``)."""
    base = resources.files("rtsim").joinpath(_EXAMPLES)
    return sorted(p.name[: -len(".toml")] for p in base.iterdir() if p.name.endswith(".toml"))


def example_path(name: str) -> Path:
    """The file of a packaged example; ``ValueError`` listing the names if unknown."""
    if name not in example_names():
        raise ScenarioError(
            f"no scenario file {name!r} and no packaged example of that name;"
            f" examples: {', '.join(example_names())}"
        )
    return Path(str(resources.files("rtsim").joinpath(_EXAMPLES, f"{name}.toml")))


def load_scenario(path_or_name: str | Path) -> Scenario:
    """Read a scenario file, or a packaged example by bare name (``"chat"``).

    Raises :class:`ScenarioError` (a ``ValueError``, one line) for an unreadable file, bad
    TOML, or any field that breaks its declaration (``rooms.team.size must be >= 2, got 1``).
    """
    p = Path(path_or_name)
    if not p.exists() and p.suffix == "" and "/" not in str(path_or_name):
        p = example_path(str(path_or_name))
    try:
        text = p.read_bytes()
    except OSError as exc:
        raise ScenarioError(f"cannot read {p}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{p.name} is not valid TOML: {str(exc).splitlines()[0]}") from None
    return parse_scenario(data, name=p.stem)
