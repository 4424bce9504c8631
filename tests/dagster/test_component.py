"""The component: found by `dg`, validated by `dagster`, secrets kept as environment variable names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dagster as dg

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_dg_lists_the_component():
    out = subprocess.run(
        [str(BIN / "dg"), "list", "components", "--json"],
        cwd=ROOT / "example_project",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    keys = {c["key"] for c in json.loads(out.stdout)["items"]}
    assert "trackstar_dagster.TrackstarSyncComponent" in keys


def test_dagster_definitions_validate_passes():
    out = subprocess.run(
        [str(BIN / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]


def test_component_keeps_secrets_as_env_var_names(monkeypatch):
    monkeypatch.setenv("TRACKSTAR_API_KEY", "key-that-must-not-show")
    monkeypatch.setenv("ACME_WMS_TOKEN", "token-that-must-not-show")
    from trackstar_example.definitions import defs

    resource = defs().resources["trackstar"]
    assert isinstance(resource.api_key, dg.EnvVar) and resource.api_key == "TRACKSTAR_API_KEY"
    assert all(isinstance(c.access_token, dg.EnvVar) for c in resource.connections)
    assert "must-not-show" not in repr(resource)
