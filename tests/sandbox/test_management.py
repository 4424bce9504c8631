"""Auth, catalog, write-info, connections and generate-sandbox, over real HTTP."""

from __future__ import annotations

import httpx

from tests.sandbox.helpers import SHIPBOB, SHIPHERO, WMS, client
from trackstar_dagster.sandbox.server import SandboxHandle
from trackstar_dagster.sandbox.state import ConnectionSpec

PLACEHOLDER = "N/A - Connect an account to see options"


def _warehouse_enums(doc: dict) -> list[list[str]]:
    """Every ``warehouse_id`` property's enum in a write-info doc."""
    found: list[list[str]] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            props = node.get("properties")
            if isinstance(props, dict) and isinstance(props.get("warehouse_id"), dict):
                found.append(props["warehouse_id"].get("enum"))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    return found


def test_401_on_wrong_or_missing_key_and_token(sandbox: SandboxHandle) -> None:
    with httpx.Client(base_url=sandbox.base_url) as c:
        r = c.get("/integrations/wms")
        assert r.status_code == 401
        assert r.json()["origin"] == "trackstar" and r.json()["error"]
        assert r.headers["x-request-id"]
        r = c.get("/integrations/wms", headers={"x-trackstar-api-key": "wrong"})
        assert r.status_code == 401
        assert "wrong" not in r.text
    with client(sandbox, token=None) as c:
        assert c.get("/wms/orders").status_code == 401  # data endpoint without token
    with client(sandbox, token="not-a-token") as c:
        r = c.get("/wms/orders")
        assert r.status_code == 401 and "not-a-token" not in r.text
    with client(sandbox, token=WMS, api_key="wrong") as c:
        assert c.post("/wms/orders", json={}).status_code == 401


def test_catalog_lists_20_integrations_and_one(sandbox: SandboxHandle) -> None:
    with client(sandbox, token=None) as c:
        r = c.get("/integrations/wms")
        assert r.status_code == 200
        data = r.json()["data"]
        assert len(data) == 20
        assert {"shipbob", "shiphero", "wms_sandbox"} <= {e["integration_name"] for e in data}
        one = c.get("/integrations/wms/shipbob").json()["data"]
        assert len(one) == 1 and one[0]["display_name"] == "ShipBob"
        assert c.get("/integrations/wms/sandbox").json()["data"][0]["integration_name"] == "wms_sandbox"


def test_404_unknown_integration_or_type(sandbox: SandboxHandle) -> None:
    with client(sandbox, token=None) as c:
        for path in ("/integrations/wms/nope", "/integrations/nope", "/integrations/wms/nope/write-info"):
            r = c.get(path)
            assert r.status_code == 404, path
            assert set(r.json()) >= {"error", "id"}


def test_catalog_limit_only_when_switched_on(sandbox_factory) -> None:
    sb = sandbox_factory()
    with client(sb, token=None) as c:
        assert all(c.get("/integrations/wms").status_code == 200 for _ in range(3))
    sb = sandbox_factory(catalog_limit=True)
    with client(sb, token=None) as c:
        assert c.get("/integrations/wms").status_code == 200
        r = c.get("/integrations/wms")
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) > 0 and r.headers["x-ratelimit-limit"] == "1"
        assert c.get("/integrations/wms/shipbob/write-info").status_code == 200  # write-info is not limited


def test_write_info_placeholder_without_token_and_warehouses_with(sandbox_factory) -> None:
    sb = sandbox_factory(
        connections={
            "tok-a": ConnectionSpec("shiphero", warehouse_ids=["WH-A1", "WH-A2"]),
            "tok-b": "shiphero",
            "tok-c": "shipbob",
        }
    )
    with client(sb, token=None) as c:
        doc = c.get("/integrations/wms/shiphero/write-info").json()
        assert doc["openapi"] == "3.1.0"
        enums = _warehouse_enums(doc)
        assert enums and all(e == [PLACEHOLDER] for e in enums)
    with client(sb, token="tok-a") as c:
        enums = _warehouse_enums(c.get("/integrations/wms/shiphero/write-info").json())
        assert enums and all(e == ["WH-A1", "WH-A2"] for e in enums)
    with client(sb, token="tok-b") as c:
        enums = _warehouse_enums(c.get("/integrations/wms/shiphero/write-info").json())
        assert enums and all(e == ["shiphero-wh-1", "shiphero-wh-2"] for e in enums)
    with client(sb, token="tok-c") as c:  # a shipbob token cannot read shiphero's connection-specific info
        assert 400 <= c.get("/integrations/wms/shiphero/write-info").status_code < 500


def test_write_info_return_causes_with_token(sandbox_factory) -> None:
    sb = sandbox_factory(
        connections={"tok": ConnectionSpec("ongoing_wms", return_causes=(("DMG", "Damaged"),))}
    )
    with client(sb, token=None) as c:
        cause = c.get("/integrations/wms/ongoing_wms/write-info").json()["components"]["schemas"][
            "ReturnCause"
        ]
        assert "connect an account" in cause["properties"]["return_reason"]["enum"][0].lower()
    with client(sb, token="tok") as c:
        cause = c.get("/integrations/wms/ongoing_wms/write-info").json()["components"]["schemas"][
            "ReturnCause"
        ]
        assert cause["properties"]["code"]["enum"] == ["DMG"]
        assert cause["properties"]["return_reason"]["enum"] == ["Damaged"]


def test_connections_list_and_lookup(sandbox: SandboxHandle) -> None:
    with client(sandbox, token=None) as c:
        page = c.get("/connections").json()
        assert page["total_count"] == 3 and page["next_token"] is None
        by_name = {x["integration_name"]: x for x in page["data"]}
        assert set(by_name) == {"wms_sandbox", "shiphero", "shipbob"}
        for conn in page["data"]:
            assert conn["integration_type"] == "wms"
            assert {"connection_id", "customer_id", "created_at", "available_actions"} <= set(conn)
            assert SHIPBOB not in str(conn)  # no token in the listing
        one = c.get("/connections", params={"access_token": SHIPHERO}).json()["data"]
        assert [x["integration_name"] for x in one] == ["shiphero"]
        cid = one[0]["connection_id"]
        assert c.get(f"/connections/{cid}").json()["integration_name"] == "shiphero"
        assert c.get("/connections/nope").status_code == 404
        paged = c.get("/connections", params={"limit": 2}).json()
        assert paged["total_count"] == 2 and paged["next_token"]
        rest = c.get("/connections", params={"limit": 2, "page_token": paged["next_token"]}).json()
        assert rest["total_count"] == 1 and rest["next_token"] is None


def test_generate_sandbox_returns_wms_sandbox_token_and_resets(sandbox: SandboxHandle) -> None:
    from tests.sandbox.helpers import SANDBOX_ORDER

    with client(sandbox, token=WMS) as c:
        assert c.post("/wms/orders", json=SANDBOX_ORDER).status_code == 200
    with client(sandbox, token=None) as c:
        r = c.post("/sandbox/generate-sandbox/wms")
        assert r.status_code == 200
        got = r.json()
        assert got["access_token"] == WMS and got["integration_name"] == "sandbox"
        assert {"connection_id", "customer_id", "available_actions", "available_endpoints"} <= set(got)
        assert "create_order" in got["available_actions"]
    assert sandbox.records("orders", WMS) == []
    with client(sandbox, token=WMS) as c:  # "sandbox" is an alias everywhere
        assert c.get("/integrations/wms/sandbox/write-info").status_code == 200


def test_unknown_route_is_json_404(sandbox: SandboxHandle) -> None:
    with client(sandbox) as c:
        r = c.get("/nope/at/all")
        assert r.status_code == 404 and r.json()["error"]
        assert r.headers["x-request-id"]
