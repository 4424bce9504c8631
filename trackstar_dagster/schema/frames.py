"""pandera models of the two frames the schema engine produces, so assets can type and validate them."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series


class WriteInfoFieldsModel(pa.DataFrameModel):
    """``write_info_fields``: one row per field of every write operation of a write-info document."""

    integration_type: Series[str]
    integration_name: Series[str]
    action: Series[str]
    method: Series[str] = pa.Field(isin=["POST", "PUT", "PATCH"])
    path: Series[str]
    field: Series[str]
    type: Series[str] = pa.Field(nullable=True)
    format: Series[str] = pa.Field(nullable=True)
    nullable: Series[bool]
    required: Series[bool]
    required_effective: Series[bool]
    enum: Series[object]
    description: Series[str] = pa.Field(nullable=True)
    # the column "example" under another attribute name: ``example`` is DataFrameModel's example-data classmethod
    example_: Series[str] = pa.Field(nullable=True, alias="example")
    branch: Series[str] = pa.Field(nullable=True)

    class Config:
        strict = True
        ordered = True

    @pa.dataframe_check
    @classmethod  # what pandera makes of a check anyway; spelled out so type checkers read it as one
    def effective_implies_required(cls, df: pd.DataFrame) -> pd.Series:
        """A field cannot be required from the root down unless it is required at its own level."""
        return ~df["required_effective"] | df["required"]

    @pa.check("enum")
    @classmethod
    def enum_is_list(cls, series: pd.Series) -> pd.Series:
        """Every ``enum`` cell is a list (empty when the field has none)."""
        return series.map(lambda v: isinstance(v, list))


class CatalogModel(pa.DataFrameModel):
    """``catalog_frame``: one row per integration x write operation (action missing when it has none)."""

    integration_type: Series[str]
    integration_name: Series[str]
    display_name: Series[str] = pa.Field(nullable=True)
    action: Series[str] = pa.Field(nullable=True)
    method: Series[str] = pa.Field(nullable=True)
    path: Series[str] = pa.Field(nullable=True)
    required_base_schema_fields: Series[object]
    optional_base_schema_fields: Series[object]
    integration_specific_fields: Series[object]
    integration_specific_required: Series[object]
    available_actions: Series[object]

    class Config:
        strict = True
        ordered = True

    @pa.dataframe_check
    @classmethod
    def list_columns_hold_lists(cls, df: pd.DataFrame) -> pd.Series:
        """The list-valued columns hold lists in every row (never NaN or a string)."""
        cols = [
            "required_base_schema_fields",
            "optional_base_schema_fields",
            "integration_specific_fields",
            "integration_specific_required",
            "available_actions",
        ]
        return df[cols].map(lambda v: isinstance(v, list)).all(axis=1)


class WriteInfoAssetModel(WriteInfoFieldsModel):
    """The write-info asset's frame: the fields, and the connection whose token fetched the document."""

    connection: Series[str] = pa.Field(nullable=True)
