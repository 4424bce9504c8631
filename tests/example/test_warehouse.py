"""The example warehouse is deterministic, about two years deep, and dirty in the ways the sync must handle."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import duckdb
import pytest
import yaml
from trackstar_example import warehouse
from trackstar_example.warehouse import CUSTOMERS, DIRT_RATES, seed_warehouse

from trackstar_dagster.base.nulls import is_null_like

MAPPING = Path(warehouse.__file__).with_name("mapping.yaml")
WRITE_INFO = Path(__file__).resolve().parents[2] / "trackstar_dagster" / "sandbox" / "data" / "write-info"


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, warehouse.SeedSummary]:
    """One full two-year seed shared by the tests that only read it."""
    path = tmp_path_factory.mktemp("wh") / "warehouse.duckdb"
    return path, seed_warehouse(path)


def _query(path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_two_years_three_customers_and_fast(full: tuple[Path, warehouse.SeedSummary]) -> None:
    path, summary = full
    assert summary.seconds < 10
    assert 25_000 <= summary.orders <= 36_000
    assert 2.5 <= summary.rows / summary.orders <= 3.5
    assert summary.first_order_date.date() == date(2024, 11, 25)
    assert summary.last_order_date.date() == date(2026, 11, 24)
    assert set(summary.orders_per_customer) == {"acme", "globex", "initech", "umbrella"}
    types = dict((name, typ) for name, typ, *_ in _query(path, "DESCRIBE order_lines"))
    assert types["order_date"] == "TIMESTAMP"
    assert types["quantity"] == "INTEGER"
    assert types["unit_price"] == "DECIMAL(10,2)"
    assert _query(
        path,
        "SELECT count(*) FROM (SELECT order_id, line_number FROM order_lines GROUP BY ALL HAVING count(*) > 1)",
    ) == [(0,)]
    customers = _query(path, "SELECT customer, connection, integration FROM customers ORDER BY customer")
    assert customers == [
        ("acme", "acme_wms", "wms_sandbox"),
        ("globex", "globex_shiphero", "shiphero"),
        ("initech", "initech_shipbob", "shipbob"),
    ]
    lines_per_order = _query(
        path, "SELECT min(n), max(n) FROM (SELECT count(*) n FROM order_lines GROUP BY order_id)"
    )
    assert lines_per_order[0][0] == 1 and lines_per_order[0][1] >= 5


def test_weekdays_busier_than_weekends(full: tuple[Path, warehouse.SeedSummary]) -> None:
    path, _ = full
    per_dow = dict(
        _query(
            path,
            "SELECT isodow(order_date), count(DISTINCT order_id) FROM order_lines GROUP BY 1",
        )
    )
    assert per_dow[1] > per_dow[6]


def test_dirt_kinds_present_at_a_few_percent(full: tuple[Path, warehouse.SeedSummary]) -> None:
    path, summary = full
    assert set(summary.dirty_orders) == set(DIRT_RATES) | {"unmapped_customer"}
    assert all(n > 0 for n in summary.dirty_orders.values())
    assert 0.01 <= summary.dirty_share <= 0.06
    # The ground-truth table agrees with the data it describes.
    dup = _query(
        path,
        "SELECT count(*) FROM (SELECT order_id FROM order_lines GROUP BY order_id "
        "HAVING count(DISTINCT ship_address1) > 1)",
    )[0][0]
    assert dup == summary.dirty_orders["duplicate_order_id"]
    bad_qty = _query(path, "SELECT count(DISTINCT order_id) FROM order_lines WHERE quantity < 1")[0][0]
    assert bad_qty == summary.dirty_orders["bad_quantity"]
    assert (
        _query(path, "SELECT count(*) FROM order_lines WHERE ship_city IS NULL OR ship_state IS NULL")[0][0]
        > 0
    )
    assert (
        _query(
            path,
            "SELECT count(*) FROM order_lines WHERE ship_city IN ('', 'NULL', 'n/a', 'None', 'null', ' ', 'N/A')",
        )[0][0]
        > 0
    )
    assert _query(path, "SELECT count(*) FROM order_lines WHERE unit_price IS NULL")[0][0] > 0
    assert _query(path, "SELECT count(*) FROM order_lines WHERE isnan(discount_amount)")[0][0] > 0
    assert (
        _query(path, "SELECT count(DISTINCT order_id) FROM order_lines WHERE customer = 'umbrella'")[0][0]
        == (summary.dirty_orders["unmapped_customer"])
    )
    # Every order marked clean has no null-like value in a column its integration requires.
    dirty_ids = {r[0] for r in _query(path, "SELECT order_id FROM seed_dirt")}
    with duckdb.connect(str(path), read_only=True) as con:
        frame = con.execute("SELECT * FROM order_lines").df()
    clean = frame[~frame["order_id"].isin(dirty_ids)]
    for cust in CUSTOMERS:
        rows = clean[clean["customer"] == cust.customer]
        for col in warehouse.REQUIRED_HEADER[cust.integration] + warehouse.REQUIRED_LINE[cust.integration]:
            assert not rows[col].map(is_null_like).any(), (cust.customer, col)
        assert (rows["quantity"] >= 1).all()
        assert (rows["unit_price"].astype(float) >= 0).all()


def test_real_values_that_look_null_like_are_present(full: tuple[Path, warehouse.SeedSummary]) -> None:
    path, summary = full
    namibia = _query(path, "SELECT count(DISTINCT order_id) FROM order_lines WHERE ship_country = 'NA'")[0][0]
    assert namibia > 0.01 * summary.orders
    assert not is_null_like("NA")
    assert _query(path, "SELECT count(*) FROM order_lines WHERE ship_company = 'None Such Ltd'")[0][0] > 0
    assert not is_null_like("None Such Ltd")
    assert _query(path, "SELECT count(*) FROM order_lines WHERE unit_price = 0 AND quantity >= 1")[0][0] > 0
    # Postal codes keep their leading zeros (strings, not numbers).
    assert _query(path, "SELECT count(*) FROM order_lines WHERE ship_postal_code = '02116'")[0][0] > 0


def test_seed_is_deterministic_and_reseeding_replaces(tmp_path: Path) -> None:
    a, b = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    seed_warehouse(a, days=60)
    seed_warehouse(b, days=60)
    # NaN != NaN in Python, so compare the discount column as text.
    sql = (
        "SELECT * REPLACE (CAST(discount_amount AS VARCHAR) AS discount_amount) "
        "FROM order_lines ORDER BY order_id, line_number"
    )
    rows_a = _query(a, sql)
    assert rows_a == _query(b, sql)
    assert _query(a, "SELECT * FROM seed_dirt") == _query(b, "SELECT * FROM seed_dirt")
    other = seed_warehouse(b, days=60, seed=8)
    assert _query(b, sql) != rows_a
    assert other.orders == _query(b, "SELECT count(DISTINCT order_id) FROM order_lines")[0][0]
    smaller = seed_warehouse(a, days=5, end_date=date(2025, 3, 1))
    assert _query(a, "SELECT count(*) FROM order_lines")[0][0] == smaller.rows < len(rows_a)
    assert _query(a, "SELECT min(order_date)::DATE, max(order_date)::DATE FROM order_lines") == [
        (date(2025, 2, 25), date(2025, 3, 1))
    ]


def test_cli_prints_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        warehouse.main(["--path", str(tmp_path / "w.duckdb"), "--days", "3", "--end-date", "2025-01-10"]) == 0
    )
    out = capsys.readouterr().out
    assert "line rows" in out and "2025-01-10" in out


def test_mapping_fields_exist_and_suit_the_integrations() -> None:
    config = yaml.safe_load(MAPPING.read_text())
    columns = {name for name, _ in warehouse.COLUMNS}
    assert config["key"] in columns and config["connection_column"] in columns
    assert set(config["fields"].values()) <= columns
    assert config["connection_values"] == {c.customer: c.connection for c in CUSTOMERS}
    targets = set(config["fields"])
    accepted: set[str] = set()
    for cust in CUSTOMERS:
        schemas = json.loads((WRITE_INFO / f"{cust.integration}.json").read_text())["components"]["schemas"]
        order = next(s for name, s in schemas.items() if name.startswith("CreatewmsOrder--"))

        def ref(prop: dict, schemas: dict = schemas) -> dict:
            prop = prop.get("items", prop)
            return schemas[prop["$ref"].rsplit("/", 1)[-1]]

        address, item = ref(order["properties"]["ship_to_address"]), ref(order["properties"]["line_items"])
        accepted |= set(order["properties"])
        accepted |= {f"ship_to_address.{f}" for f in address["properties"]}
        accepted |= {f"line_items.{f}" for f in item["properties"]}
        # Every field the integration requires is mapped.
        required = {f for f in order["required"] if f not in ("ship_to_address", "line_items")}
        required |= {f"ship_to_address.{f}" for f in address["required"]}
        required |= {f"line_items.{f}" for f in item["required"]}
        assert required <= targets, (cust.integration, required - targets)
        # Every per-connection constant is a field the integration accepts.
        for name in config.get("connection_constants", {}).get(cust.connection, {}):
            assert name in order["properties"], (cust.connection, name)
    # Every mapped target is a field at least one of the three integrations accepts.
    assert targets <= accepted, targets - accepted


def test_mapping_loads_with_the_library() -> None:
    from trackstar_dagster.mapping import MappingConfig

    config = MappingConfig.from_yaml(MAPPING)
    raw = yaml.safe_load(MAPPING.read_text())
    # what the sync relies on: one create_order per order_id, routed by customer to the three connections
    assert config.action == "create_order" and config.key == "order_id"
    assert config.connection is None and config.connection_column == "customer"
    assert config.connections() == sorted(c.connection for c in CUSTOMERS)
    assert config.connection_values == {c.customer: c.connection for c in CUSTOMERS}
    assert warehouse.UNMAPPED_CUSTOMER not in config.connection_values  # its orders become routing rejects
    # every mapped field survives loading, line items included; ShipBob gets its warehouse as a constant
    assert config.fields == raw["fields"]
    assert {"line_items.quantity", "ship_to_address.country", "order_number"} <= set(config.fields)
    assert config.connection_constants == {"initech_shipbob": {"warehouse_id": "shipbob-wh-1"}}
