"""Every notebook as a learner meets it: JupyterLab in headless Debian Chromium, Run All,
then every slider moved once.

For each notebook under ``notebooks/`` (00, 01, ...): open it in a JupyterLab served from a
copy of the repository's notebooks (so nothing the lab autosaves touches the committed
ones), run all cells through JupyterLab's own ``notebook:run-all-cells`` command, wait for
the kernel to be idle, then for every ipywidgets slider press one arrow key on its handle
(ArrowRight, or ArrowLeft when it sits at its maximum; if one step leaves the output as it
was, End or Home) and check that

* the slider's value moved,
* the output of the slider's cell changed (a re-drawn plot or table),
* no traceback appeared anywhere in the notebook,
* the kernel was idle again within ``SLIDER_BOUND_S`` (a hang guard, not a timing claim).

Never downloads a browser: Playwright drives /usr/bin/chromium (``executable_path``); the
test skips with a message if it or Playwright is missing. JupyterLab comes from the same
environment as the test (``sys.executable``'s ``jupyter``); the kernel imports ``rtsim``
from this checkout (``PYTHONPATH``). On failure a screenshot goes to ``test-artifacts/``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rtsim.live.process import free_port

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = ROOT / "test-artifacts"
JUPYTER = Path(sys.executable).parent / "jupyter"
# Generous hang guards (the machine may be shared); none of them is a timing claim.
RUN_ALL_BOUND_S = 600
SLIDER_BOUND_S = 120

# The suite's 300 s timeout would cut in before the bounds above: a notebook's Run All plus
# its sliders may take minutes when the run shares two cores (still a hang guard).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(RUN_ALL_BOUND_S + 600)]

if not os.path.exists(CHROMIUM):
    pytest.skip(
        f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)"
        " to run the notebook browser test",
        allow_module_level=True,
    )
if not JUPYTER.exists():
    pytest.skip(f"{JUPYTER} is missing: install the lab extra", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (dev extra)")

# JavaScript run in the page. ``jupyterapp`` is exposed by --LabApp.expose_app_in_browser.
NOTEBOOK_READY = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  return !!(w && w.content && w.context && w.context.isReady && w.sessionContext
            && w.sessionContext.session && w.sessionContext.session.kernel
            && w.sessionContext.session.kernel.status === 'idle');
}"""
KERNEL_IDLE = """() => {
  const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  return k.status === 'idle';
}"""
# Done: idle, nothing queued ([*]), and every code cell ran or one failed (Run All stops).
RUN_ALL_DONE = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  if (w.sessionContext.session.kernel.status !== 'idle') return false;
  const cells = w.content.widgets.filter(c => c.model.type === 'code');
  if (cells.some(c => (c.promptNode && c.promptNode.textContent || '').includes('*')))
    return false;
  const failed = document.querySelector(
    '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]');
  return failed !== null || cells.every(c => c.model.executionCount !== null);
}"""
TRACEBACKS = """() => Array.from(document.querySelectorAll(
    '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'))
  .map(e => e.textContent || '')
  .filter(t => /Traceback|Error\\b/.test(t))
  .map(t => t.slice(-1500))"""
COUNT_IDLE = """() => {
  window.__idles = 0;
  const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  k.statusChanged.connect((_, s) => { if (s === 'idle') window.__idles += 1; });
}"""
SLIDER_COUNT = "() => document.querySelectorAll('.widget-slider .noUi-handle').length"
# The outputs of the cell holding slider i, without the widget controls themselves.
CELL_OUTPUT = """i => {
  const h = document.querySelectorAll('.widget-slider .noUi-handle')[i];
  const cell = h.closest('.jp-Cell');
  const outs = Array.from(cell.querySelectorAll('.widget-output, .jp-OutputArea-output'))
    .filter(o => !o.querySelector('.widget-slider') && !o.closest('.widget-slider'));
  return outs.map(o => o.innerHTML).join('\\n');
}"""
SLIDER_STATE = """i => {
  const h = document.querySelectorAll('.widget-slider .noUi-handle')[i];
  const s = h.closest('.widget-slider');
  const label = s.querySelector('.widget-label');
  const readout = s.querySelector('.widget-readout');
  // aria-valuenow is rounded to one decimal (noUiSlider): read the readout for the value.
  return {label: label ? label.textContent : '', max: h.getAttribute('aria-valuemax'),
          at: h.getAttribute('aria-valuenow'),
          now: (readout ? readout.textContent : '') + '|' + h.getAttribute('aria-valuetext')};
}"""


def _wait_http(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 180  # generous: "does not hang"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        assert proc.poll() is None, "JupyterLab exited"
        time.sleep(0.5)
    raise AssertionError(f"nothing answered on {url}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A JupyterLab on a free port over a copy of notebooks/, docs/ and benchmarks/results/."""
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    shutil.copytree(ROOT / "docs", root / "docs")
    if (ROOT / "benchmarks" / "results").exists():
        shutil.copytree(ROOT / "benchmarks" / "results", root / "benchmarks" / "results")
    port = free_port()
    token = os.urandom(16).hex()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "JUPYTER_RUNTIME_DIR": str(root / ".runtime"),
        "PATH": os.pathsep.join([str(JUPYTER.parent), os.environ.get("PATH", "")]),
    }
    proc = subprocess.Popen(
        [
            str(JUPYTER),
            "lab",
            "--no-browser",
            "--allow-root",
            "--LabApp.expose_app_in_browser=True",
            f"--ServerApp.root_dir={root}",
            f"--IdentityProvider.token={token}",
            "--ip=127.0.0.1",
            f"--port={port}",
            "--ServerApp.port_retries=0",
        ],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{base}/api/status?token={token}", proc)
        yield f"{base}|{token}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def _press(page: Any, i: int, key: str, where: str) -> None:
    """Press ``key`` on slider ``i``'s handle; wait for the value to move and the kernel to
    run and be idle again (within SLIDER_BOUND_S, a hang guard)."""
    now = page.evaluate(SLIDER_STATE, i)["now"]
    idles = page.evaluate("() => window.__idles")
    handle = page.locator(".widget-slider .noUi-handle").nth(i)
    handle.scroll_into_view_if_needed()
    handle.press(key)
    _wait(
        page,
        f"([i, v]) => ({SLIDER_STATE})(i).now !== v",
        30,
        f"{where}: value moved on {key}",
        [i, now],
    )
    _wait(
        page,
        f"n => window.__idles > n && ({KERNEL_IDLE})()",
        SLIDER_BOUND_S,
        f"{where}: kernel idle again after {key}",
        idles,
    )
    page.wait_for_timeout(300)  # let the browser render what the kernel sent


def _wait(page: Any, expr: str, bound_s: float, what: str, arg: Any = None) -> None:
    try:
        page.wait_for_function(expr, arg=arg, timeout=bound_s * 1000, polling=250)
    except sync_api.TimeoutError:
        raise AssertionError(f"{what}: not within {bound_s:.0f} s") from None


# Under pytest-xdist (--dist loadgroup) the notebooks go to BROWSER_GROUPS workers, one lab
# each, balanced by what each notebook took here (COST_S, seconds of Run All and sliders in
# `make test` on 2 cores; a notebook not listed counts DEFAULT_COST_S): the costliest first,
# each to the group with the least so far. A group runs its costliest notebooks first, so
# what its worker takes on when two are left (xdist hands out more work then) is short.
# Re-measure (the durations pytest lists) when a notebook's run time changes a lot.
COST_S = {"00": 5, "01": 79, "02": 57, "03": 53, "04": 65, "05": 29, "06": 19, "07": 185, "08": 113}
DEFAULT_COST_S = 60
BROWSER_GROUPS = 2


def _cost(name: str) -> float:
    return COST_S.get(name[:2], DEFAULT_COST_S)


def _balanced(names: list[str], groups: int) -> list[tuple[str, int]]:
    """(name, group) for every notebook, the costliest first (longest-first assignment)."""
    total = [0.0] * groups
    out = []
    for n in sorted(names, key=lambda n: (-_cost(n), n)):
        g = total.index(min(total))
        total[g] += _cost(n)
        out.append((n, g))
    return out


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.xdist_group(f"notebooks-browser-{g}"))
     for n, g in _balanced(NOTEBOOKS, BROWSER_GROUPS)],
)  # fmt: skip
def test_run_all_then_every_slider(lab: str, browser: Any, name: str) -> None:
    base, token = lab.split("|")
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    page_errors: list[str] = []
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    try:
        # A workspace of its own, so the lab does not reopen the previous notebook's tab.
        page.goto(f"{base}/lab/workspaces/{name[:2]}/tree/notebooks/{name}?token={token}")
        _wait(page, NOTEBOOK_READY, 180, f"{name}: notebook open with an idle kernel")
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
        # Run All marks the cells queued at once; then wait for the queue to drain.
        _wait(page, RUN_ALL_DONE, RUN_ALL_BOUND_S, f"{name}: Run All finished")
        assert page.evaluate(TRACEBACKS) == [], f"{name}: Run All raised"

        # Count the kernel's returns to idle, to wait for the run a slider causes.
        page.evaluate(COUNT_IDLE)
        n = page.evaluate(SLIDER_COUNT)
        moved: list[str] = []
        for i in range(n):
            state = page.evaluate(SLIDER_STATE, i)
            where = f"{name}: slider {i} ({state['label']})"
            before = page.evaluate(CELL_OUTPUT, i)
            at_max = float(state["at"]) >= float(state["max"])
            # One step; if that leaves the output as it was (a step inside a flat region,
            # e.g. a cap above the need), go to the far end of the range.
            for key in ("ArrowLeft", "Home") if at_max else ("ArrowRight", "End"):
                _press(page, i, key, where)
                if page.evaluate(CELL_OUTPUT, i) != before:
                    break
            assert page.evaluate(CELL_OUTPUT, i) != before, f"{where}: output did not change"
            assert page.evaluate(TRACEBACKS) == [], f"{where}: raised"
            moved.append(state["label"])
        assert len(moved) == n
        assert not page_errors, page_errors
    except BaseException:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"browser-{name}.png"), full_page=True)
        raise
    finally:
        # Free the kernel (and any live server it started) before the next notebook.
        try:
            page.evaluate(
                "async () => { const w = window.jupyterapp.shell.currentWidget;"
                " if (w && w.sessionContext) await w.sessionContext.shutdown(); }"
            )
        finally:
            ctx.close()


def test_every_notebook_is_covered() -> None:
    """The parametrisation finds the notebooks (a renamed folder would test nothing)."""
    assert len(NOTEBOOKS) >= 8, NOTEBOOKS
    assert all(re.match(r"\d\d-", n) for n in NOTEBOOKS)
