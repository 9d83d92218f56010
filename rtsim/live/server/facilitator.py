"""The room's shared screen: the facilitator's view and the room's step-down control.

=========================  ==============================================================
``GET /facilitator``       the page (``rtsim/live/static/facilitator.html``)
``GET /facilitator/stats`` the room's figures, JSON (:class:`~.roomstats.RoomStats`, read
                           from the same registry as ``/metrics``; public as it is)
``GET /facilitator/room``  the room's level: ``{"transport", "ceiling", "overloaded",
                           "poll_s", "levels"}``
``POST /facilitator/room`` ``{"transport": T}`` or ``{"step": "down" | "up"}`` → the same,
                           with ``"changed"``; facilitators only (below)
=========================  ==============================================================

Stepping the room reuses the degradation mechanism (:mod:`.overload`): the facilitator
sets its *ceiling* — WebSocket (none), SSE, long polling or polling — and the open
connections on a better transport get a ``degrade`` frame/event naming it, new ones a
503 naming it, ``/poll`` answers carry it; stepping up sends ``recover``. Clients move
with their own reconnect policy, from their cursors, so nothing is lost.

Who may step the room (``Authorization: Bearer …`` on the POST; never from the query
string, so a link cannot do it):

* the server's secret itself (``rtsim serve --secret S``: whoever started the server), or
* a token with the ``"admin": true`` claim (``rtsim token --secret S --user host --admin``),
  the one to put in the page's link, ``/facilitator?token=T``;
* anyone in open mode (no secret; the server then listens on a loopback address only).

No credential, or an invalid or expired one: 401; a valid token without ``admin``: 403.
"""

from __future__ import annotations

import hmac
import logging
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from rtsim.core.reconnect import rank
from rtsim.core.transport import CASCADE, Transport

from ..protocol import ProtocolError
from .auth import AuthError
from .gate import json_response
from .roomstats import RoomStats
from .state import ServerState

__all__ = ["LEVELS", "FacilitatorService"]

#: The rungs a facilitator steps the room through, best first (the article's cascade).
LEVELS: tuple[Transport, ...] = CASCADE

STATIC_DIR = Path(__file__).parents[1] / "static"
log = logging.getLogger("rtsim.live.server")


class FacilitatorService:
    """The ``/facilitator`` endpoints of one server (``state``: its shared state)."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.stats_reader = RoomStats(state.metrics.registry, state.served)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/facilitator", self.page),
            web.get("/facilitator/stats", self.stats),
            web.get("/facilitator/room", self.room),
            web.post("/facilitator/room", self.step),
        ]

    async def close(self) -> None:
        """Nothing to close (the ceiling lives in the overload monitor)."""

    # --- who may step the room -------------------------------------------------------------
    def authorize(self, request: web.Request) -> str:
        """Who is stepping the room (for the log); raises
        :class:`~rtsim.live.server.auth.AuthError` (401 without a valid credential, 403 for
        a token without ``admin``)."""
        auth = self.state.auth
        if auth.secret is None:
            return "open mode"
        given = auth.token_from(request.headers.get("Authorization"), None)
        if not given:
            raise AuthError(
                "no_token",
                "stepping the room needs the server's secret or an admin token"
                " (rtsim token --admin) as Authorization: Bearer …",
            )
        if hmac.compare_digest(given.encode(), auth.secret.encode()):
            return "the server's secret"
        grant = auth.grant(given)
        if not grant.admin:
            raise AuthError(
                "forbidden",
                f"user {grant.user!r} may not step the room: not an admin token"
                " (rtsim token --admin)",
                403,
            )
        return grant.user

    # --- endpoints -------------------------------------------------------------------------
    async def page(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(
            STATIC_DIR / "facilitator.html", headers={"Cache-Control": "no-cache"}
        )

    def room_state(self) -> dict[str, Any]:
        """The room's level now (the ``room`` object of every answer here)."""
        o = self.state.overload
        return {
            "transport": o.level.value,
            "ceiling": o.ceiling.value,
            "overloaded": o.overloaded,
            "poll_s": o.poll_s,
            "levels": [t.value for t in LEVELS],
        }

    async def stats(self, request: web.Request) -> web.Response:
        figures = self.stats_reader.read(time.monotonic(), self.state.overload.poll_s)
        return json_response({"room": self.room_state(), **figures})

    async def room(self, request: web.Request) -> web.Response:
        return json_response(self.room_state())

    async def step(self, request: web.Request) -> web.Response:
        gate = self.state.gate
        try:
            who = self.authorize(request)
            target = _target(await gate.json_body(request), self.state.overload.ceiling)
        except (AuthError, ProtocolError) as exc:
            return gate.http_error(exc)
        old = self.state.overload.ceiling
        self.state.overload.set_ceiling(target)
        if target is not old:
            log.info("room stepped %s to %s by %s", _way(old, target), target.value, who)
        return json_response({**self.room_state(), "changed": target is not old})


def _way(old: Transport, new: Transport) -> str:
    return "down" if rank(new) > rank(old) else "up"


def _target(body: dict[str, Any], ceiling: Transport) -> Transport:
    """The ceiling a POST body asks for (``transport`` or a ``step`` from ``ceiling``; a
    step past either end stays there); raises ``ProtocolError("bad_frame")``."""
    extra = sorted(set(body) - {"transport", "step"})
    if extra:
        raise ProtocolError("bad_frame", f"unknown field(s): {', '.join(extra)}")
    if ("transport" in body) == ("step" in body):
        raise ProtocolError("bad_frame", "give either 'transport' or 'step'")
    names = [t.value for t in LEVELS]
    if "transport" in body:
        if body["transport"] not in names:
            raise ProtocolError("bad_frame", f"transport must be one of {', '.join(names)}")
        return Transport(body["transport"])
    step = body["step"]
    if step not in ("down", "up"):
        raise ProtocolError("bad_frame", "step must be 'down' or 'up'")
    i = LEVELS.index(ceiling) + (1 if step == "down" else -1)
    return LEVELS[min(max(i, 0), len(LEVELS) - 1)]
