"""`make lab` serves JupyterLab: start it the way the Makefile does and ask for /lab."""

import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from rtsim.live.process import free_port

ROOT = Path(__file__).resolve().parents[1]


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
            m = re.search(rf"http://(?:127\.0\.0\.1|localhost):{port}/lab\?token=([0-9a-f]+)", line)
            if m:
                token = m.group(1)
                break
        assert token, "JupyterLab did not print its URL"
        url = f"http://127.0.0.1:{port}/lab?token={token}"
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
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.stdout:
            proc.stdout.close()
