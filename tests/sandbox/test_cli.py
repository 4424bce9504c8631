"""The command line: --help, and a real process answering curl-like requests."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx

from trackstar_dagster.sandbox.__main__ import build_parser, settings_from_args


def test_help_documents_defaults() -> None:
    out = subprocess.run([sys.executable, "-m", "trackstar_dagster.sandbox", "--help"], capture_output=True,
                         text=True, timeout=30, env={**os.environ, "COLUMNS": "250"})
    assert out.returncode == 0
    for text in ("--port", "8787", "sandbox-api-key", "--connection", "sandbox-token-shipbob=shipbob",
                 "--fault-commit-then-fail", "--state", "--data", "--log-file", "--catalog-limit"):
        assert text in out.stdout, text


def test_args_to_settings() -> None:
    args = build_parser().parse_args(["--connection", "t1=shipbob", "--connection", "t2=sandbox", "--latency-ms",
                                      "250", "--write-rate", "0", "--fault-drop", "0.5", "--hang-s", "3"])
    s = settings_from_args(args)
    assert s.connections == {"t1": "shipbob", "t2": "sandbox"}
    assert s.latency == 0.25 and s.write_rate is None and s.read_rate == 10.0
    assert s.faults.drop == 0.5 and s.faults.hang_s == 3


def test_process_serves_401_and_200(tmp_path) -> None:
    ready = tmp_path / "ready"
    log_file = tmp_path / "log.txt"
    cmd = [sys.executable, "-m", "trackstar_dagster.sandbox", "--port", "0", "--api-key", "secret-key-123",
           "--ready-file", str(ready), "--log-file", str(log_file)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        url = ready.read_text()
        assert httpx.get(f"{url}/integrations/wms", headers={"x-trackstar-api-key": "nope"}).status_code == 401
        r = httpx.get(f"{url}/integrations/wms", headers={"x-trackstar-api-key": "secret-key-123"})
        assert r.status_code == 200 and len(r.json()["data"]) == 20
    finally:
        proc.terminate()
        stdout, _ = proc.communicate(timeout=15)
    assert stdout == b""  # logs never go to stdout
    log_text = log_file.read_text()
    assert "GET /integrations/wms 200" in log_text and "secret-key-123" not in log_text
