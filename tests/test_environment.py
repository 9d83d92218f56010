"""pyproject.toml and environment.yml must list the same dependencies."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"redis-py": "redis", "prometheus_client": "prometheus-client"}


def _norm(req: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", req)
    assert m, req
    name = CONDA_NAMES.get(m.group(1), m.group(1)).lower().replace("_", "-")
    return name, m.group(2).replace(" ", "")


def test_environment_yml_matches_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = dict(_norm(r) for r in project["dependencies"])
    wanted.update(_norm(r) for r in project["optional-dependencies"]["dev"])
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = lines.index("dependencies:")
    deps = [ln.strip()[2:] for ln in lines[start + 1 :] if ln.startswith("  - ")]
    conda = dict(_norm(d) for d in deps if not d.startswith(("python", "pip")))
    assert conda == wanted
