"""trackstar-dagster: the Dagster integration for the Trackstar API."""

from dagster_shared.libraries import DagsterLibraryRegistry

from trackstar_dagster.assets import (
    CATALOG_KEY,
    WRITE_INFO_KEY,
    build_trackstar_catalog_asset,
    build_trackstar_schema_assets,
    build_trackstar_write_info_asset,
)
from trackstar_dagster.base.errors import (
    ConfigError,
    TrackstarAuthError,
    TrackstarBadRequestError,
    TrackstarConflictError,
    TrackstarDagsterError,
    TrackstarError,
    TrackstarNotFoundError,
    TrackstarNotImplementedError,
    TrackstarRateLimitError,
    TrackstarServerError,
    TrackstarTransportError,
    TrackstarValidationError,
)
from trackstar_dagster.base.keys import key_tag
from trackstar_dagster.base.nulls import NULL_LIKE_STRINGS, drop_empty, is_null_like
from trackstar_dagster.client import PRODUCTION_URL, TrackstarClient, WriteResponse
from trackstar_dagster.component import TrackstarSyncComponent
from trackstar_dagster.io_manager import TrackstarFrameIOManager, read_frames
from trackstar_dagster.mapping import MappingConfig, PayloadBatch, Target, build_payloads
from trackstar_dagster.ops import write_orders
from trackstar_dagster.resource import ResolvedConnection, TrackstarConnection, TrackstarResource
from trackstar_dagster.schema import (
    DriftReport,
    Problem,
    body_validator,
    catalog_frame,
    parse_json_lenient,
    schema_drift,
    write_info_fields,
)
from trackstar_dagster.sql import sql_results_sink, sql_row_loader
from trackstar_dagster.sync import (
    TrackstarSync,
    build_trackstar_sync_assets,
    build_trackstar_sync_definitions,
    trackstar_io_manager_resources,
)
from trackstar_dagster.translator import TrackstarAssetData, TrackstarTranslator
from trackstar_dagster.version import __version__
from trackstar_dagster.write_step import WriteConfig
from trackstar_dagster.writer import FailurePolicy, Ledger, WriteReport, write_payloads

DagsterLibraryRegistry.register("trackstar-dagster", __version__, is_dagster_package=False)

__all__ = [
    "CATALOG_KEY",
    "NULL_LIKE_STRINGS",
    "PRODUCTION_URL",
    "WRITE_INFO_KEY",
    "ConfigError",
    "DriftReport",
    "FailurePolicy",
    "Ledger",
    "MappingConfig",
    "PayloadBatch",
    "Problem",
    "ResolvedConnection",
    "Target",
    "TrackstarAuthError",
    "TrackstarBadRequestError",
    "TrackstarClient",
    "TrackstarConflictError",
    "TrackstarConnection",
    "TrackstarDagsterError",
    "TrackstarError",
    "TrackstarFrameIOManager",
    "read_frames",
    "TrackstarNotFoundError",
    "TrackstarNotImplementedError",
    "TrackstarRateLimitError",
    "TrackstarResource",
    "TrackstarServerError",
    "TrackstarAssetData",
    "TrackstarSync",
    "TrackstarSyncComponent",
    "TrackstarTransportError",
    "TrackstarTranslator",
    "TrackstarValidationError",
    "WriteConfig",
    "WriteReport",
    "WriteResponse",
    "__version__",
    "body_validator",
    "build_payloads",
    "build_trackstar_catalog_asset",
    "build_trackstar_schema_assets",
    "build_trackstar_sync_assets",
    "build_trackstar_sync_definitions",
    "build_trackstar_write_info_asset",
    "catalog_frame",
    "drop_empty",
    "is_null_like",
    "key_tag",
    "parse_json_lenient",
    "schema_drift",
    "sql_results_sink",
    "sql_row_loader",
    "trackstar_io_manager_resources",
    "write_info_fields",
    "write_orders",
    "write_payloads",
]
