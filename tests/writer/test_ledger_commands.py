"""``trackstar-dagster ledger rebuild|show``: a lost ledger rebuilt by hand, then a run that sends nothing."""

from __future__ import annotations

import subprocess
import sys

from tests.writer import NS, WMS, WMS_TOKEN, CountingClient, make_client, orders
from trackstar_dagster.cli import main
from trackstar_dagster.sandbox.server import run_sandbox
from trackstar_dagster.writer import write_payloads
from trackstar_dagster.writer.ledger import Ledger


def test_rebuild_by_hand_then_show_then_a_run_sends_nothing(tmp_path, monkeypatch, capsys):
    with run_sandbox(write_rate=1000.0, read_rate=1000.0, faults={"ignore_idempotency_key": True}) as sb:
        payloads = orders(25)
        write_payloads(
            payloads, make_client(sb), {WMS: WMS_TOKEN}, Ledger(tmp_path / "lost.sqlite"), namespace=NS
        )
        url = f"sqlite:///{tmp_path / 'new.sqlite'}"
        monkeypatch.setenv("TRACKSTAR_API_KEY", sb.api_key)
        monkeypatch.setenv("MY_TOKEN", WMS_TOKEN)
        argv = [
            "ledger",
            "rebuild",
            "--sync",
            NS,
            "--connection",
            WMS,
            "--token-env",
            "MY_TOKEN",
            "--base-url",
            sb.base_url,
            "--ledger-url",
            url,
        ]
        assert main(argv) == 0
        assert "25 records" in capsys.readouterr().out
        assert main(["ledger", "show", "--ledger-url", url]) == 0
        shown = capsys.readouterr().out
        assert "created" in shown and "25" in shown and WMS_TOKEN not in shown
        counting = CountingClient(make_client(sb))
        report = write_payloads(
            payloads, counting, {WMS: WMS_TOKEN}, Ledger(url), namespace=NS, rebuild="never"
        )
        assert report.counts["unchanged"] == 25 and counting.writes == 0
        assert len(sb.records("orders", token=WMS_TOKEN)) == 25


def test_a_missing_secret_variable_is_a_message_not_a_traceback(tmp_path, monkeypatch):
    monkeypatch.delenv("NOPE", raising=False)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "trackstar_dagster.cli",
            "ledger",
            "rebuild",
            "--sync",
            NS,
            "--connection",
            WMS,
            "--token-env",
            "NOPE",
            "--base-url",
            "http://127.0.0.1:9",
            "--ledger-url",
            f"sqlite:///{tmp_path / 'l.sqlite'}",
        ],
        capture_output=True,
        text=True,
        env={"TRACKSTAR_API_KEY": "k", "PATH": ""},
    )
    assert proc.returncode == 2 and "NOPE is not set" in proc.stderr and "Traceback" not in proc.stderr


def test_a_ledger_password_on_the_command_line_is_refused(capsys):
    assert main(["ledger", "show", "--ledger-url", "postgresql+psycopg://u:secret@127.0.0.1:9/db"]) == 2
    err = capsys.readouterr().err
    assert "--ledger-url-env" in err and "secret" not in err
