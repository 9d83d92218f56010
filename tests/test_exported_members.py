"""Every package's ``__all__`` is what it exports, and every public module's ``__all__`` holds.

Like httpx's ``tests/test_exported_members.py``: a name added to a package without being
listed (or listed without existing) fails here, so the public API changes only on purpose.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import pytest

import rtsim


def _modules() -> list[str]:
    names = ["rtsim"]
    for info in pkgutil.walk_packages(rtsim.__path__, "rtsim."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


MODULES = _modules()
PACKAGES = [n for n in MODULES if hasattr(importlib.import_module(n), "__path__")]

#: The curated public API of the live package (what ``from rtsim.live import …`` offers).
LIVE_API = {
    "Authenticator",
    "BackgroundServer",
    "Backplane",
    "BackplaneUnavailable",
    "GapNotice",
    "Grant",
    "LiveClient",
    "LiveClientError",
    "LiveServer",
    "MemoryBackplane",
    "Message",
    "PortInUseError",
    "ServerConfig",
    "ServerUnreachableError",
    "create_app",
    "make_backplane",
    "make_token",
    "require_server",
    "run_server",
    "serve_in_background",
}


def test_the_walk_finds_the_layout() -> None:
    for name in ("rtsim.live.server", "rtsim.live.backplanes", "rtsim.live.clients"):
        assert name in PACKAGES
    assert "rtsim.live.server.gate" in MODULES and "rtsim.live.clients.wire" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_every_name_in_all_exists(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", [])
    assert len(exported) == len(set(exported)), f"{name}.__all__ lists a name twice"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it does not define: {missing}"


def _public_members(package: ModuleType) -> set[str]:
    """Public names bound in the package itself (its submodules and ``annotations`` aside)."""
    return {
        k
        for k, v in vars(package).items()
        if not k.startswith("_") and not isinstance(v, ModuleType) and k != "annotations"
    }


@pytest.mark.parametrize("name", PACKAGES)
def test_package_exports_exactly_its_all(name: str) -> None:
    package = importlib.import_module(name)
    exported = {n for n in getattr(package, "__all__", []) if not n.startswith("__")}
    assert exported == _public_members(package)


def test_live_api_is_the_intended_one() -> None:
    import rtsim.live

    assert set(rtsim.live.__all__) == LIVE_API
