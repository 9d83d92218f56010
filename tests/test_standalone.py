"""A clone stands on its own: nothing reads beside the repository, the data ships inside it.

This file is the one place allowed to name the old outside folder (it checks its absence).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from rtsim.lab.claims import CLAIMS
from rtsim.lab.traces import TRACE_NAMES, traces_dir

ROOT = Path(__file__).resolve().parents[1]
THIS = Path(__file__).resolve().relative_to(ROOT).as_posix()
OUTSIDE = ("../shared", "shared/data", "shared/docs")


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=60
    )


def _is_git_checkout() -> bool:
    if shutil.which("git") is None:
        return False
    top = _git("rev-parse", "--show-toplevel")
    return top.returncode == 0 and Path(top.stdout.strip()).resolve() == ROOT


@pytest.mark.skipif(not _is_git_checkout(), reason="not a git checkout")
def test_no_tracked_file_points_outside_the_repository() -> None:
    args = ["grep", "-n", "-F"]
    for s in OUTSIDE:
        args += ["-e", s]
    r = _git(*args, "--", ".", f":(exclude){THIS}")
    assert r.returncode in (0, 1), r.stderr  # 1: no match
    assert r.stdout == "", "tracked files name a folder outside the repository:\n" + r.stdout


@pytest.mark.skipif(not _is_git_checkout(), reason="not a git checkout")
def test_no_tracked_symlink_leaves_the_repository() -> None:
    r = _git("ls-files", "-s")
    assert r.returncode == 0, r.stderr
    links = [line.split("\t", 1)[1] for line in r.stdout.splitlines() if line.startswith("120000")]
    assert links == [], f"tracked symlinks: {links}"


def test_packaged_traces_are_there(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RTSIM_TRACES", raising=False)
    d = traces_dir()
    assert d.is_dir(), d
    assert d.resolve().parts[-3:] == ("rtsim", "data", "editing-traces"), d
    for name in TRACE_NAMES:
        assert (d / f"{name}.json.gz").stat().st_size > 100_000, name
    attribution = (d / "ATTRIBUTION.md").read_text(encoding="utf-8")
    for needed in ("josephg/editing-traces", "CC BY 4.0", "creativecommons.org/licenses/by/4.0"):
        assert needed in attribution, needed


def test_claims_page_matches_the_claims_list() -> None:
    text = (ROOT / "docs" / "claims.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (C\d+) \|.*\| (\d\d) \|$", text, flags=re.M)
    assert rows == [(c.id, c.notebook) for c in CLAIMS]


def test_notebook_links_resolve() -> None:
    """Every relative link in a notebook's markdown names a file that exists."""
    checked = 0
    for nb_path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = json.loads(nb_path.read_text(encoding="utf-8"))
        for cell in nb["cells"]:
            if cell["cell_type"] != "markdown":
                continue
            src = "".join(cell["source"])
            for target in re.findall(r"\]\(([^)\s]+)\)", src):
                if re.match(r"[a-z]+:", target) or target.startswith("#"):
                    continue
                path = (nb_path.parent / target.split("#")[0]).resolve()
                assert path.is_relative_to(ROOT), f"{nb_path.name}: {target} leaves the repo"
                assert path.exists(), f"{nb_path.name}: {target} does not exist"
                checked += 1
    assert checked >= 2  # the links to docs/claims.md and docs/facts.md at least


@pytest.mark.slow
@pytest.mark.skipif(not _is_git_checkout(), reason="not a git checkout")
def test_wheel_carries_the_traces(tmp_path: Path) -> None:
    """A non-editable install gets the package data: build a wheel from a copy of the tree."""
    files = _git("ls-files", "--cached", "--others", "--exclude-standard")
    assert files.returncode == 0, files.stderr
    src = tmp_path / "src"
    for rel in files.stdout.splitlines():
        p = ROOT / rel
        if p.is_file():  # skips files deleted but not yet committed
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, src / rel)
    dist = tmp_path / "dist"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-q", "-w", str(dist), str(src)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = dist.glob("rtsim-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in TRACE_NAMES:
        assert f"rtsim/data/editing-traces/{name}.json.gz" in names, name
    assert "rtsim/data/editing-traces/ATTRIBUTION.md" in names
