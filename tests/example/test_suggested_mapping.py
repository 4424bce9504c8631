"""The example's mapping is the suggestion, reviewed: what ``suggest_mapping`` proposes for each customer's rows
against its integration's write-info, put together, plus the reviewer's edits listed here (and in the
mapping file's closing comment). A change to the suggestion that the reviewer did not see fails here."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from trackstar_example import warehouse
from trackstar_example.warehouse import CUSTOMERS, seed_warehouse

from tests.mapping.conftest import load_doc
from trackstar_dagster import MappingConfig, suggest_mapping

EXAMPLE = MappingConfig.from_yaml(Path(warehouse.__file__).with_name("mapping.yaml"))

#: the reviewer's edits to the three suggestions put together: field -> column (None: taken out), and why
FIELD_EDITS: dict[str, tuple[str | None, str]] = {
    "shipping_method": (None, "deprecated in favour of service_level (the write-info's description)"),
    "service_level": ("shipping_method", "the warehouse's shipping_method is a service level"),
}


@pytest.fixture(scope="module")
def lines(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("wh") / "warehouse.duckdb"
    seed_warehouse(path, days=30)
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute("SELECT * FROM order_lines ORDER BY order_date, order_id, line_number").df()


def test_the_examples_mapping_is_the_suggestion_plus_the_listed_edits(lines) -> None:
    fields: dict[str, str] = {}
    for c in CUSTOMERS:
        rows = lines[lines["customer"] == c.customer].reset_index(drop=True)
        s = suggest_mapping(
            rows, load_doc(c.integration), connection=c.connection, integration_name=c.integration
        )
        assert s.key == EXAMPLE.key and s.unmatched_required == []
        for field, column in s.fields.items():
            assert fields.setdefault(field, column) == column, f"the suggestions disagree on {field}"
    for field, (column, _why) in FIELD_EDITS.items():
        if column is None:
            fields.pop(field)
        else:
            fields[field] = column
    assert fields == EXAMPLE.fields
    # the rest is routing and constants, which no table's columns can suggest
    assert EXAMPLE.connection_column == "customer"
    assert EXAMPLE.connection_values == {c.customer: c.connection for c in CUSTOMERS}
