"""The schema engine: reads any integration's write-info (OpenAPI 3.1) document. No Dagster imports."""

from trackstar_dagster.schema.catalog import (
    CATALOG_COLUMNS,
    catalog_frame,
    parse_json_lenient,
    required_fields,
)
from trackstar_dagster.schema.drift import DriftReport, schema_drift
from trackstar_dagster.schema.fields import FIELD_COLUMNS, empty_fields_frame, write_info_fields
from trackstar_dagster.schema.frames import CatalogModel, WriteInfoFieldsModel
from trackstar_dagster.schema.openapi import (
    Operation,
    action_for,
    find_operation,
    is_one_of_pattern,
    is_placeholder_enum,
    json_types,
    normalise_schema,
    operations,
    resolve,
)
from trackstar_dagster.schema.validator import (
    FORMAT_CHECKS,
    BodyValidator,
    Problem,
    body_validator,
    body_validators,
    compile_schema,
    is_iso_date,
    is_iso_datetime,
)

__all__ = [
    "CATALOG_COLUMNS",
    "FIELD_COLUMNS",
    "FORMAT_CHECKS",
    "BodyValidator",
    "CatalogModel",
    "DriftReport",
    "Operation",
    "Problem",
    "WriteInfoFieldsModel",
    "action_for",
    "body_validator",
    "body_validators",
    "catalog_frame",
    "compile_schema",
    "empty_fields_frame",
    "find_operation",
    "is_iso_date",
    "is_iso_datetime",
    "is_one_of_pattern",
    "is_placeholder_enum",
    "json_types",
    "normalise_schema",
    "operations",
    "parse_json_lenient",
    "required_fields",
    "resolve",
    "schema_drift",
    "write_info_fields",
]
