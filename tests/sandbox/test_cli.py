"""The command line: --help, and a real process answering curl-like requests."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx

from trackstar_dagster.sandbox.__main__ import build_parser, settings_from_args


def test_help_documents_defaults() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "trackstar_dagster.sandbox", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert out.returncode == 0
    for text in (
        "--port",
        "8787",
        "sandbox-api-key",
        "--connection",
        "sandbox-token-shipbob=shipbob",
        "--fault-commit-then-fail",
        "--state",
        "--data",
        "--log-file",
        "--catalog-limit",
    ):
        assert text in out.stdout, text


def test_args_to_settings() -> None:
    args = build_parser().parse_args(
        [
            "--connection",
            "t1=shipbob",
            "--connection",
            "t2=sandbox",
            "--latency-ms",
            "250",
            "--write-rate",
            "0",
            "--fault-drop",
            "0.5",
            "--hang-s",
            "3",
        ]
    )
    s = settings_from_args(args)
    assert s.connections == {"t1": "shipbob", "t2": "sandbox"}
    assert s.latency == 0.25 and s.write_rate is None and s.read_rate == 10.0
    assert s.faults.drop == 0.5 and s.faults.hang_s == 3


def test_process_serves_401_and_200(tmp_path) -> None:
    ready = tmp_path / "ready"
    log_file = tmp_path / "log.txt"
    cmd = [
        sys.executable,
        "-m",
        "trackstar_dagster.sandbox",
        "--port",
        "0",
        "--api-key",
        "secret-key-123",
        "--ready-file",
        str(ready),
        "--log-file",
        str(log_file),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        url = ready.read_text()
        assert (
            httpx.get(f"{url}/integrations/wms", headers={"x-trackstar-api-key": "nope"}).status_code == 401
        )
        r = httpx.get(f"{url}/integrations/wms", headers={"x-trackstar-api-key": "secret-key-123"})
        assert r.status_code == 200 and len(r.json()["data"]) == 20
    finally:
        proc.terminate()
        stdout, _ = proc.communicate(timeout=15)
    assert stdout == b""  # logs never go to stdout
    log_text = log_file.read_text()
    assert "GET /integrations/wms 200" in log_text and "secret-key-123" not in log_text


def test_run_sandbox_subprocess_keeps_key_and_tokens_off_the_command_line() -> None:
    """``ps`` shows every user's command lines: the key and tokens travel in the child's environment."""
    import psutil

    from trackstar_dagster.sandbox.server import run_sandbox

    key, token = "ps-visible-key-4e1d", "ps-visible-token-9c2a"
    spec = {"integration_name": "shipbob", "warehouse_ids": ["wh-a"], "connection_id": "conn_ps_test"}
    with run_sandbox(
        api_key=key, connections={token: spec, "second-token-77b0": "shiphero"}, subprocess=True
    ) as sb:
        assert sb.process is not None and sb.process.poll() is None
        cmdline = " ".join(psutil.Process(sb.process.pid).cmdline())
        with open(f"/proc/{sb.process.pid}/cmdline", "rb") as f:
            raw = f.read().decode(errors="replace")
        # the child really serves those connections (the settings did reach it)
        r = httpx.get(
            f"{sb.base_url}/connections/conn_ps_test",
            headers={"x-trackstar-access-token": token, "x-trackstar-api-key": key},
        )
        assert r.status_code == 200 and r.json()["integration_name"] == "shipbob"
        r = httpx.get(
            f"{sb.base_url}/wms/orders",
            headers={"x-trackstar-access-token": "second-token-77b0", "x-trackstar-api-key": key},
        )
        assert r.status_code == 200
    assert "trackstar_dagster.sandbox" in cmdline
    for secret in (key, token, "second-token-77b0"):
        assert secret not in cmdline and secret not in raw, secret


def test_connections_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv(
        "TRACKSTAR_SANDBOX_CONNECTIONS_JSON",
        '{"env-token-1": {"integration_name": "shipbob"}, "env-token-2": "shiphero"}',
    )
    s = settings_from_args(build_parser().parse_args(["--connection", "cli-token=sandbox"]))
    assert s.connections is not None
    assert {t: (c if isinstance(c, str) else c.integration_name) for t, c in s.connections.items()} == {
        "env-token-1": "shipbob",
        "env-token-2": "shiphero",
        "cli-token": "sandbox",
    }
