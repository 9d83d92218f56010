"""`make lab` serves JupyterLab as a learner meets it.

Start it the way the Makefile does, then check: /lab answers; the docs the notebooks link
(``../docs/*.md``) are inside what the lab serves; ``/`` opens the start notebook; and a
terminal opened through the lab finds the venv's ``rtsim`` on PATH.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from rtsim.live.process import free_port

ROOT = Path(__file__).resolve().parents[1]
# The Makefile's venv: $VENV (relative to the repository) or .venv.
VENV = ROOT / os.environ.get("VENV", ".venv")


def _api(base: str, token: str, method: str, path: str) -> tuple[int, Any]:
    """One REST call with the token in the header (Jupyter then skips its XSRF check)."""
    req = urllib.request.Request(
        f"{base}{path}", method=method, headers={"Authorization": f"token {token}"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        body = r.read()
        return r.status, json.loads(body) if body else None


def _terminal_output(base: str, token: str, command: str, pattern: str) -> str:
    """Open a lab terminal, type ``command``, return the first match of ``pattern``."""
    status, term = _api(base, token, "POST", "/api/terminals")
    assert status == 200, status
    name = term["name"]
    ws_url = base.replace("http://", "ws://") + f"/terminals/websocket/{name}?token={token}"
    seen = ""
    try:
        with connect(ws_url, open_timeout=30, close_timeout=5) as ws:
            ws.send(json.dumps(["stdin", command + "\r"]))
            deadline = time.monotonic() + 60  # generous: "does not hang"
            while time.monotonic() < deadline:
                try:
                    raw = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
                except TimeoutError:
                    break
                kind, *rest = json.loads(raw)
                if kind == "stdout":
                    seen += rest[0]
                    m = re.search(pattern, seen)
                    if m:
                        return m.group(1)
                elif kind == "disconnect":
                    break
    finally:
        _api(base, token, "DELETE", f"/api/terminals/{name}")
    raise AssertionError(f"no {pattern!r} in the terminal's output: {seen[-2000:]!r}")


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_lab_serves_jupyterlab(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "PORT": str(port), "NO_BROWSER": "1", "JUPYTER_RUNTIME_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        ["make", "-s", "lab"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        token = None
        deadline = time.monotonic() + 120
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            m = re.search(rf"http://(?:127\.0\.0\.1|localhost):{port}/\S*\?token=([0-9a-f]+)", line)
            if m:
                token = m.group(1)
                break
        assert token, "JupyterLab did not print its URL"
        base = f"http://127.0.0.1:{port}"
        url = f"{base}/lab?token={token}"
        for _ in range(60):
            try:
                with urllib.request.urlopen(url, timeout=30) as r:
                    status, body = r.status, r.read()
                break
            except urllib.error.URLError:
                assert proc.poll() is None, "JupyterLab exited"
                time.sleep(0.5)
        else:
            raise AssertionError(f"nothing answered on {url}")
        assert status == 200
        assert b"JupyterLab" in body

        # The docs the notebooks link (../docs/claims.md from notebooks/) are served...
        status, model = _api(base, token, "GET", "/api/contents/docs/claims.md")
        assert status == 200 and model["type"] == "file"
        assert "C21" in model["content"]
        status, model = _api(base, token, "GET", "/api/contents/notebooks?content=1")
        assert status == 200
        names = {item["name"] for item in model["content"]}
        assert "00-start-here.ipynb" in names
        # ...and the lab opens on the start notebook.
        with urllib.request.urlopen(f"{base}/?token={token}", timeout=30) as r:
            assert r.geturl().split("?")[0].endswith("/lab/tree/notebooks/00-start-here.ipynb")

        # A terminal opened from the lab has the venv's rtsim on PATH.
        found = _terminal_output(
            base,
            token,
            "printf 'RTSIM_AT<%s>\\n' \"$(command -v rtsim)\"",
            r"RTSIM_AT<((?:/[^>]*)?)>",  # not the echoed command's "<%s>"
        )
        assert found, "command -v rtsim found nothing in a lab terminal"
        assert Path(found).resolve() == (VENV / "bin" / "rtsim").resolve(), found
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.stdout:
            proc.stdout.close()
