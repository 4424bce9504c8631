"""The example project's definitions: the DuckDB warehouse table, and the orders sync from its defs.yaml."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from trackstar_example.settings import apply_sandbox_defaults, warehouse_path

apply_sandbox_defaults()

order_lines = dg.AssetSpec(
    dg.AssetKey(["warehouse", "order_lines"]),
    description="Order history, one row per line item, for three customers (seeded by trackstar_example.warehouse).",
    group_name="warehouse",
    kinds={"duckdb"},
)


@dg.definitions
def defs() -> dg.Definitions:
    component_defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
    return dg.Definitions.merge(
        component_defs,
        dg.Definitions(
            assets=[order_lines],
            resources={"duckdb": DuckDBResource(database=warehouse_path())},
        ),
    )
