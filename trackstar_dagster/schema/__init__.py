"""The schema engine: reads any integration's write-info (OpenAPI 3.1) document. No Dagster imports."""
