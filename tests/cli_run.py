"""``rtsim ARGS`` run inside the test process, with what a subprocess would give back.

A subprocess pays the commands' imports (pandas, scipy, SimPy: 1-3 s of CPU) on every call;
in this process they are paid once. ``tests/test_cli.py`` keeps a subprocess check that
``python -m rtsim.cli`` answers exactly as :func:`run_cli` does.
"""

from __future__ import annotations

import contextlib
import io
import subprocess

from rtsim.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Exit status, stdout and stderr of ``rtsim ARGS`` (``SystemExit`` is the status)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    return subprocess.CompletedProcess(["rtsim", *args], code, out.getvalue(), err.getvalue())
