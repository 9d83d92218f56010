import json
import subprocess
import sys

import pytest

from rtsim.cli import main

from .cli_run import run_cli

KEYS = {
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "deliveries",
    "deliveries_per_s",
    "bytes_per_message",
    "requests_per_message",
}


@pytest.mark.parametrize("transport", ["websocket", "sse", "long-polling", "polling"])
def test_simulate_transports_json(transport: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "simulate",
        "transports",
        "--transport",
        transport,
        "--clients",
        "20",
        "--rate",
        "5",
        "--rtt-ms",
        "40",
        "--duration",
        "20",
        "--seed",
        "3",
        "--json",
    ]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= KEYS
    assert out["deliveries"] > 0 and out["p50_ms"] >= 20
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out) == out  # same seed, same figures


def test_simulate_transports_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["simulate", "transports", "--transport", "sse", "--clients", "5", "--duration", "5"])
        == 0
    )
    out = capsys.readouterr().out
    assert "p99_ms" in out and "sse" in out


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--transport", "smoke"], "invalid choice: 'smoke'"),
        (["--transport", "sse", "--clients", "0"], "must be >= 1, got 0"),
        (["--transport", "sse", "--rate", "-3"], "must be > 0, got -3"),
        (["--transport", "sse", "--rtt-ms", "abc"], "expects a number"),
        (["--transport", "sse", "--loss", "1.5"], r"loss must be in \[0, 1\)"),
        (["--transport", "sse", "--clients", "2", "--channels", "3"], "must not exceed --clients"),
    ],
)
def test_bad_parameters_exit_nonzero_with_a_reason(args: list[str], reason: str) -> None:
    proc = run_cli("simulate", "transports", *args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("rtsim")]
    assert lines and __import__("re").search(reason, lines[-1])


# --- one line, exit 2, for every bad value; strict JSON ------------------------------------
def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rtsim.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _strict(text: str) -> object:
    def refuse(c: str) -> object:
        raise ValueError(f"non-standard JSON constant {c}")

    return json.loads(text, parse_constant=refuse)


BAD = [
    (["simulate", "transports", "--transport", "sse", "--loss", "1.5"], "--loss must be in [0, 1)"),
    (["simulate", "transports", "--transport", "sse", "--rate", "inf"], "--rate must be finite"),
    (["simulate", "transports", "--transport", "sse", "--rate", "nan"], "--rate must be finite"),
    (["simulate", "transports", "--transport", "sse", "--clients", "x"], "--clients expects"),
    (["simulate", "presence", "--viewers", "0"], "--viewers must be >= 1, got 0"),
    (["simulate", "presence", "--timeout-s", "10"], "--timeout-s (10) must be >= --heartbeat-s"),
    (["simulate", "architecture", "--duration=-inf"], "--duration must be finite"),
    (["simulate", "architecture", "--broker", "zmq"], "invalid choice"),
    (["simulate", "editing", "--strategy", "ot", "--delete-fraction", "1"], "in [0, 1)"),
    (["simulate", "editing", "--rtt-ms", "5"], "required: --strategy"),
    (["simulate", "nosuch"], "invalid choice"),
    (["validate", "--reps", "1"], "--reps must be >= 2, got 1"),
    (["validate", "--workers", "-1"], "--workers must be >= 0"),
    (["replay-trace", "no-such-trace", "--strategy", "ot"], "no-such-trace"),
    (["replay-trace", "x", "--strategy", "ot", "--limit", "0"], "--limit must be >= 1"),
    (["compare", "--transport", "sse", "--rate", "inf"], "--rate must be finite"),
    (["claims", "--seed", "-1"], "--seed must be >= 0"),
    (["serve", "--port", "abc"], "--port expects a whole number"),
    (["serve", "--bogus"], "unrecognized arguments"),
    (["load", "--url", "http://x", "--transport", "sse", "--rate", "1e999"], "must be finite"),
    (["token", "--secret", "s", "--user", "u", "--ttl", "nan"], "--ttl must be finite"),
    (["token", "--user", "u"], "required: --secret"),
    (["token", "--secret", "s" * 32], "required: --user (or --links N)"),
    (["token", "--secret", "s" * 32, "--links", "0"], "--links must be >= 1"),
    (["token", "--secret", "s" * 32, "--links", "2", "--base-url", "ftp:x"], "http(s) URL"),
    ([], "required: COMMAND"),
]


@pytest.mark.parametrize(("args", "needle"), BAD, ids=[" ".join(a) or "none" for a, _ in BAD])
def test_every_bad_value_is_one_line_exit_2(args: list[str], needle: str) -> None:
    proc = run_cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "usage:" not in proc.stderr
    assert needle in lines[0]
    assert lines[0].startswith("rtsim")


@pytest.mark.parametrize(
    "args",
    [["simulate", "transports", "--transport", "sse", "--loss", "1.5"], ["serve", "--bogus"]],
    ids=["model-parameter", "argparse"],
)
def test_the_console_command_answers_as_in_process(args: list[str]) -> None:
    """``python -m rtsim.cli`` (a real process) gives what ``run_cli`` gives in this one, so
    the in-process checks above speak for the command."""
    proc = _run(*args)
    inproc = run_cli(*args)
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", inproc.stderr)
    assert inproc.returncode == 2 and inproc.stdout == ""


def test_help_still_shows_usage() -> None:
    proc = run_cli("simulate", "transports", "-h")
    assert proc.returncode == 0 and "usage:" in proc.stdout
    assert "--rtt-ms" in proc.stdout and "default 50" in proc.stdout  # from the metadata


@pytest.mark.parametrize(
    "args",
    [
        ["simulate", "transports", "--transport", "long-polling", "--clients", "5"],
        ["simulate", "presence", "--viewers", "3", "--resources", "2", "--duration", "60"],
        ["simulate", "architecture", "--clients", "500", "--duration", "30"],
        ["simulate", "editing", "--strategy", "lww", "--duration", "2"],
        ["validate", "--reps", "2", "--workers", "1"],
        ["replay-trace", "automerge-paper", "--strategy", "string", "--limit", "50"],
    ],
    ids=["transports", "presence", "architecture", "editing", "validate", "replay-trace"],
)
def test_json_output_is_strict(args: list[str]) -> None:
    proc = run_cli(*args, "--json")
    assert proc.returncode in (0, 1), proc.stderr  # validate: 1 if a case misses
    assert "Traceback" not in proc.stderr
    out = _strict(proc.stdout)
    assert isinstance(out, dict) and out


def test_architecture_omits_figures_it_does_not_model() -> None:
    args = ["simulate", "architecture", "--clients", "500", "--duration", "30"]
    out = _strict(run_cli(*args, "--json").stdout)
    assert isinstance(out, dict) and out["deliveries"] > 0
    for key in ("bytes_per_message", "server_memory_bytes", "requests_per_message"):
        assert key not in out
    table = run_cli(*args).stdout
    assert "bytes_per_message" not in table and "server_memory_bytes" not in table


def test_presence_flags_overload() -> None:
    base = ["simulate", "presence", "--resources", "2", "--duration", "60", "--cursor-pairs", "0"]
    busy = run_cli(*base, "--viewers", "150", "--json")
    out = _strict(busy.stdout)
    assert isinstance(out, dict)
    assert out["server_cpu_utilisation"] > 1 and out["overloaded"] is True
    assert "overloaded" in busy.stderr and len(busy.stderr.splitlines()) == 1
    calm = run_cli(*base, "--viewers", "3", "--json")
    out = _strict(calm.stdout)
    assert isinstance(out, dict)
    assert out["server_cpu_utilisation"] <= 1 and out["overloaded"] is False
    assert calm.stderr == ""
    assert "OVERLOAD" in run_cli(*base, "--viewers", "150").stdout


def test_latency_ms_is_a_deprecated_alias_of_twice_the_rtt() -> None:
    common = ["simulate", "editing", "--strategy", "ot", "--duration", "3", "--json"]
    old = run_cli(*common, "--latency-ms", "30")
    new = run_cli(*common, "--rtt-ms", "60")
    assert old.returncode == 0 and new.returncode == 0
    assert "deprecated" in old.stderr and "--rtt-ms 60" in old.stderr
    assert new.stderr == ""
    assert _strict(old.stdout) == _strict(new.stdout)


def test_no_progress_bar_when_stderr_is_not_a_terminal() -> None:
    proc = _run("validate", "--reps", "2", "--workers", "1")
    assert "it/s" not in proc.stderr and "%|" not in proc.stderr


def test_token_links_one_join_link_per_learner(capsys: pytest.CaptureFixture[str]) -> None:
    from urllib.parse import parse_qs, urlsplit

    from rtsim.live.server.auth import Authenticator

    secret = "k" * 32
    args = ["token", "--secret", secret, "--links", "12", "--base-url", "http://10.1.2.3:8765/"]
    assert main([*args, "--room", "ws"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 12
    auth = Authenticator(secret)
    names = []
    for line in lines:
        url = urlsplit(line)
        assert (url.scheme, url.netloc, url.path) == ("http", "10.1.2.3:8765", "/")
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        grant = auth.grant(q["token"])
        assert grant.user == q["name"] and q["room"] == "ws"
        assert grant.may_publish("chat:ws") and grant.may_subscribe("cursor:ws")
        assert not grant.may_publish("admin")
        names.append(q["name"])
    assert names == [f"learner{i:02d}" for i in range(1, 13)]
    assert main(["token", "--secret", secret, "--links", "1", "--user", "p", "--publish", ""]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    grant = auth.grant(parse_qs(urlsplit(line).query)["token"][0])
    assert grant.user == "p01" and not grant.may_publish("chat:lobby")
