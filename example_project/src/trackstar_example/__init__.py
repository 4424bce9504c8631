"""Example project for trackstar-dagster: a DuckDB warehouse of orders synced to a Trackstar sandbox."""
