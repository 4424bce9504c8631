"""Hundreds of connections in a real sync: declared by env prefix, a file or a function, routed by a column
that names them, each written with its own token (the sandbox keeps orders per token), and no token in the
run's event log, its run config or the resource's repr, read back from the real Dagster instance."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from tests.dagster.test_sync import ORDER_FIELDS, order_line
from trackstar_dagster import MappingConfig, TrackstarResource, TrackstarSync, build_trackstar_sync_assets
from trackstar_dagster.sync import trackstar_io_manager_resources

PREFIX = "TSD_SCALE_CONN_"
N = 300

MAPPING = MappingConfig.model_validate(
    {
        "action": "create_order",
        "key": "order_id",
        "connection_column": "customer",  # no connection_values: the column holds the connection's name
        "fields": ORDER_FIELDS,
    }
)

#: what ``function_connections`` returns (set by a test: the function is called in the run, by import path)
FUNCTION_CONNECTIONS: list[tuple[str, str, str]] = []


def function_connections() -> list[tuple[str, str, str]]:
    """A user's function (e.g. reading a secrets manager): (name, integration, token) tuples."""
    return list(FUNCTION_CONNECTIONS)


def token(i: int) -> str:
    return f"scale-tok-{i:03d}-q7zk"


def rows(customers: list[str]) -> pd.DataFrame:
    """Two orders per customer (two lines each), the customer column naming the connection."""
    out = []
    for c in customers:
        for o in ("a", "b"):
            for line in (1, 2):
                out.append(order_line(f"{c}-{o}", line, customer=c, qty=line))
    return pd.DataFrame(out)


@pytest.fixture
def scale_sandbox(sandbox_factory: Any) -> Any:
    """A sandbox that knows N connections, one token each."""
    return sandbox_factory(connections={token(i): "wms_sandbox" for i in range(N)})


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, scale_sandbox: Any) -> Iterator[None]:
    for var in list(os.environ):
        if var.startswith(PREFIX):
            monkeypatch.delenv(var)
    monkeypatch.setenv("TSD_SCALE_API_KEY", scale_sandbox.api_key)
    yield


def run_sync(
    frame: pd.DataFrame, instance: dg.DagsterInstance, tmp_path: Path, sandbox: Any, **sources: Any
) -> dg.ExecuteInProcessResult:
    """One run of the sync, the resource configured at launch: its config is what the instance stores."""
    sync = TrackstarSync(name="scale", mapping=MAPPING, load_rows=lambda context, window: frame)
    config = {
        "api_key": {"env": "TSD_SCALE_API_KEY"},
        "base_url": sandbox.base_url,
        "state_dir": str(tmp_path / "state"),
        **sources,
    }
    return dg.materialize(
        build_trackstar_sync_assets(sync),
        instance=instance,
        resources={
            "trackstar": TrackstarResource.configure_at_launch(),
            **trackstar_io_manager_resources(str(tmp_path / "io")),
        },
        run_config={"resources": {"trackstar": {"config": config}}},
        raise_on_error=False,
    )


def run_storage_text(instance: dg.DagsterInstance, run_id: str) -> str:
    """Everything Dagster stored about the run, as text: the run (its config, tags) and every event."""
    run = instance.get_run_by_id(run_id)
    assert run is not None
    events = instance.all_logs(run_id)
    return "\n".join([repr(run), json.dumps(run.run_config, default=str), *(repr(e) for e in events)])


def failure_text(instance: dg.DagsterInstance, run_id: str) -> str:
    return "\n".join(
        repr(e.dagster_event.event_specific_data)
        for e in instance.all_logs(run_id)
        if e.dagster_event is not None and e.dagster_event.is_step_failure
    )


def test_three_hundred_connections_by_env_prefix_each_written_with_its_own_token(
    env: None,
    monkeypatch: pytest.MonkeyPatch,
    scale_sandbox: Any,
    instance: dg.DagsterInstance,
    tmp_path: Path,
) -> None:
    for i in range(N):
        monkeypatch.setenv(f"{PREFIX}CUST{i:03d}_TOKEN", token(i))
        monkeypatch.setenv(f"{PREFIX}CUST{i:03d}_INTEGRATION", "wms/wms_sandbox")
    customers = [f"cust{i:03d}" for i in range(N)]
    customers[7] = "CUST007"  # the warehouse's spelling: names from variables are lower case
    result = run_sync(
        rows([*customers, "cust999"]), instance, tmp_path, scale_sandbox, connections_from_env=PREFIX
    )
    assert result.success, failure_text(instance, result.run_id)
    for i in range(N):
        stored = scale_sandbox.records("orders", token=token(i))
        assert sorted(r["order_number"] for r in stored) == [f"{customers[i]}-a", f"{customers[i]}-b"], i
    # a row naming no configured connection is a reject with its reason, not a silent drop
    rejects = result.asset_value(dg.AssetKey(["scale", "rejects"]))
    assert sorted(set(rejects["key"])) == ["cust999-a", "cust999-b"]
    assert set(rejects["reason"]) == {"customer: routing value names no configured connection"}
    # the payloads' metadata: the connection count and a table, not 300 plotted entries
    (payloads_meta,) = [
        m.metadata
        for m in result.asset_materializations_for_node("scale_payloads")
        if m.asset_key == dg.AssetKey(["scale", "payloads"])
    ]
    assert payloads_meta["connections"].value == N
    assert not any(k.startswith("records_cust") for k in payloads_meta)
    assert "cust000" in payloads_meta["records_by_connection"].value
    stored_text = run_storage_text(instance, result.run_id)
    for i in range(N):
        assert token(i) not in stored_text
    assert scale_sandbox.api_key not in stored_text
    run = instance.get_run_by_id(result.run_id)
    assert run is not None  # the stored config holds the names: the prefix and the key's variable
    assert run.run_config["resources"]["trackstar"]["config"]["connections_from_env"] == PREFIX
    assert run.run_config["resources"]["trackstar"]["config"]["api_key"] == {"env": "TSD_SCALE_API_KEY"}
    # the resource, its connections read: no token in what it shows
    res = TrackstarResource(api_key=scale_sandbox.api_key, connections_from_env=PREFIX)
    shown = repr(res) + str(res) + repr(res.declared_connections()) + repr(res.resolved_connections())
    assert len(res.connection_names()) == N and not any(token(i) in shown for i in range(N))


def test_a_typod_prefix_fails_the_run_clearly_and_writes_nothing(
    env: None,
    monkeypatch: pytest.MonkeyPatch,
    scale_sandbox: Any,
    instance: dg.DagsterInstance,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv(f"{PREFIX}CUST000_TOKEN", token(0))
    monkeypatch.setenv(f"{PREFIX}CUST000_INTEGRATION", "wms_sandbox")
    result = run_sync(
        rows(["cust000"]), instance, tmp_path, scale_sandbox, connections_from_env="TSD_SCALE_CONNS_"
    )
    assert not result.success
    assert "no environment variable starts with it" in failure_text(instance, result.run_id)
    assert scale_sandbox.records("orders") == []
    assert token(0) not in run_storage_text(instance, result.run_id)


def test_a_file_with_a_bad_entry_fails_the_run_naming_it_and_writes_nothing(
    env: None, scale_sandbox: Any, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    entries: list[dict[str, Any]] = [
        {"name": f"cust{i:03d}", "integration_name": "wms_sandbox", "access_token": token(i)}
        for i in range(3)
    ]
    entries.append({"name": "cust003", "access_token": token(3)})  # no integration nor connection_id
    path = tmp_path / "connections.yaml"
    path.write_text(json.dumps(entries))
    path.chmod(0o600)
    result = run_sync(
        rows(["cust000", "cust003"]), instance, tmp_path, scale_sandbox, connections_file=str(path)
    )
    assert not result.success
    failure = failure_text(instance, result.run_id)
    assert f"{path} entry 3 ('cust003')" in failure and "integration is unknown" in failure
    assert scale_sandbox.records("orders") == []
    stored_text = run_storage_text(instance, result.run_id)
    assert all(token(i) not in stored_text for i in range(4))

    # the entry fixed: the same run writes both connections, each with its own token
    entries[3]["connection_id"] = scale_sandbox.sandbox.connections[token(3)].connection_id
    path.write_text(json.dumps(entries))
    result = run_sync(
        rows(["cust000", "cust003"]), instance, tmp_path, scale_sandbox, connections_file=str(path)
    )
    assert result.success, failure_text(instance, result.run_id)
    assert [r["order_number"] for r in scale_sandbox.records("orders", token=token(3))] == [
        "cust003-a",
        "cust003-b",
    ]
    assert len(scale_sandbox.records("orders", token=token(0))) == 2


def test_a_function_source_is_called_in_the_run(
    env: None, scale_sandbox: Any, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    FUNCTION_CONNECTIONS[:] = [(f"shop{i}", "wms/wms_sandbox", token(i)) for i in range(5)]
    try:
        result = run_sync(
            rows([f"shop{i}" for i in range(5)]),
            instance,
            tmp_path,
            scale_sandbox,
            connections_function=f"{__name__}:function_connections",
        )
    finally:
        FUNCTION_CONNECTIONS.clear()
    assert result.success, failure_text(instance, result.run_id)
    for i in range(5):
        assert sorted(r["order_number"] for r in scale_sandbox.records("orders", token=token(i))) == [
            f"shop{i}-a",
            f"shop{i}-b",
        ]
    stored_text = run_storage_text(instance, result.run_id)
    assert all(token(i) not in stored_text for i in range(5))
    assert f"{__name__}:function_connections" in stored_text
