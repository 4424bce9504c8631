"""Schema drift while running, SQLite state across restarts, and subprocess mode."""

from __future__ import annotations

import copy
import json

from tests.sandbox.helpers import SANDBOX_ORDER, WMS, body, client
from trackstar_dagster.sandbox.core import DATA_DIR
from trackstar_dagster.sandbox.server import SandboxHandle, run_sandbox


def _drifted_sandbox_doc() -> dict:
    doc = json.loads((DATA_DIR / "write-info" / "wms_sandbox.json").read_text())
    doc = copy.deepcopy(doc)
    order = doc["components"]["schemas"]["CreatewmsOrder--WMS_Sandbox--"]
    order["properties"]["priority"] = {"type": "string", "enum": ["low", "high"]}
    order["required"] = [*order["required"], "priority"]
    return doc


def test_schema_drift_while_running(sandbox: SandboxHandle) -> None:
    with client(sandbox) as c:
        assert c.post("/wms/orders", json=SANDBOX_ORDER).status_code == 200
        sandbox.set_write_info("sandbox", _drifted_sandbox_doc())  # the alias works here too
        props = c.get("/integrations/wms/wms_sandbox/write-info").json()["components"]["schemas"][
            "CreatewmsOrder--WMS_Sandbox--"
        ]["properties"]
        assert "priority" in props
        r = c.post("/wms/orders", json=SANDBOX_ORDER)
        assert r.status_code == 422 and "priority" in r.json()["detail"]["json"]
        assert c.post("/wms/orders", json=body(SANDBOX_ORDER, priority="high")).status_code == 200
        sandbox.reset()  # restores the shipped docs and forgets records
        assert c.post("/wms/orders", json=SANDBOX_ORDER).status_code == 200
    assert len(sandbox.records("orders")) == 1


def test_sqlite_state_survives_a_restart(tmp_path) -> None:
    state = tmp_path / "state.db"
    with run_sandbox(state_file=state) as sb, client(sb) as c:
        made = c.post("/wms/orders", json=SANDBOX_ORDER, headers={"Idempotency-Key": "k"}).json()
        c.post("/wms/orders", json=body(SANDBOX_ORDER, order_number="SO-2"))
    with run_sandbox(state_file=state) as sb, client(sb) as c:
        assert c.get(f"/wms/orders/{made['id']}").json()["data"] == made["data"]
        assert [r["order_number"] for r in c.get("/wms/orders").json()["data"]] == ["SO-1", "SO-2"]
        r = c.post("/wms/orders", json=SANDBOX_ORDER, headers={"Idempotency-Key": "k"})
        assert r.headers.get("idempotent-replayed") == "true" and r.json()["id"] == made["id"]
        assert len(sb.records("orders", WMS)) == 2


def test_subprocess_mode_uses_admin_routes(tmp_path) -> None:
    log_file = tmp_path / "sandbox.log"
    with run_sandbox(
        subprocess=True, connections={"tok": "sandbox"}, log_file=log_file, faults={"burst_429": 1}
    ) as sb:
        assert sb.process is not None and sb.tokens == {"tok": "sandbox"}
        with client(sb, token="tok") as c:
            assert c.post("/wms/orders", json=SANDBOX_ORDER).status_code == 429
            assert c.post("/wms/orders", json=SANDBOX_ORDER).status_code == 200
            sb.set_write_info("wms_sandbox", _drifted_sandbox_doc())
            assert c.post("/wms/orders", json=SANDBOX_ORDER).status_code == 422
            sb.configure(faults={"commit_then_fail": 1.0}, read_rate=None)
            assert c.post("/wms/orders", json=body(SANDBOX_ORDER, priority="low")).status_code == 502
            assert len(sb.records("orders", token="tok")) == 2
            sb.reset()
            assert sb.records("orders") == []
        with client(sb, token=None) as c:
            assert c.get("/_sandbox/records/orders").status_code == 200
        with client(sb, token=None, api_key="wrong") as c:
            assert c.post("/_sandbox/reset").status_code == 401
    text = log_file.read_text()
    assert "listening on" in text and "tok" not in text.replace("token", "")


def test_data_dir_loads_another_catalog(tmp_path) -> None:
    (tmp_path / "write-info").mkdir()
    entry = json.loads((DATA_DIR / "catalog-wms.json").read_text())["data"]
    mini = [e for e in entry if e["integration_name"] == "shipbob"]
    (tmp_path / "catalog-wms.json").write_text(json.dumps({"data": mini}))
    (tmp_path / "catalog-cart.json").write_text(json.dumps([]))
    (tmp_path / "write-info" / "shipbob.json").write_text(
        (DATA_DIR / "write-info" / "shipbob.json").read_text()
    )
    with run_sandbox(data_dir=tmp_path, connections={"t": "shipbob"}) as sb, client(sb, token=None) as c:
        assert [e["integration_name"] for e in c.get("/integrations/wms").json()["data"]] == ["shipbob"]
        assert c.get("/integrations/cart").json() == {"data": []}
        assert c.get("/integrations/wms/shiphero/write-info").status_code == 404
        assert c.get("/integrations/wms/shipbob/write-info").status_code == 200
