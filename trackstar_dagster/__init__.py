"""trackstar-dagster: the Dagster integration for the Trackstar API.

The top level holds the names a Dagster project uses: the resource and its connections, a sync and its
definitions, the schema assets, the translator, the component, the IO manager, and the engine's few entry
points (``build_payloads``, ``write_payloads``, ``Ledger``, ``TrackstarClient``). Everything else lives in its
layer: ``trackstar_dagster.base`` (errors, nulls, keys), ``.client``, ``.schema``, ``.mapping``, ``.writer``.
Names that used to be here still resolve, with a ``DeprecationWarning`` naming their home.
"""

import importlib
import warnings
from typing import Any

from dagster_shared.libraries import DagsterLibraryRegistry

from trackstar_dagster.assets import CATALOG_KEY, WRITE_INFO_KEY, build_trackstar_schema_assets
from trackstar_dagster.base.errors import ConfigError, TrackstarError
from trackstar_dagster.client import TrackstarClient
from trackstar_dagster.component import TrackstarSyncComponent
from trackstar_dagster.io_manager import TrackstarFrameIOManager, read_frames
from trackstar_dagster.mapping import MappingConfig, Target, build_payloads
from trackstar_dagster.mapping.suggest import suggest_mapping
from trackstar_dagster.ops import write_orders
from trackstar_dagster.resource import ResolvedConnection, TrackstarConnection, TrackstarResource
from trackstar_dagster.sync import (
    TrackstarSync,
    build_trackstar_sync_assets,
    build_trackstar_sync_definitions,
)
from trackstar_dagster.translator import TrackstarAssetData, TrackstarTranslator
from trackstar_dagster.version import __version__
from trackstar_dagster.write_step import WriteConfig
from trackstar_dagster.writer import Ledger, write_payloads

DagsterLibraryRegistry.register("trackstar-dagster", __version__, is_dagster_package=False)

__all__ = [
    "CATALOG_KEY",
    "WRITE_INFO_KEY",
    "ConfigError",
    "Ledger",
    "MappingConfig",
    "ResolvedConnection",
    "Target",
    "TrackstarAssetData",
    "TrackstarClient",
    "TrackstarConnection",
    "TrackstarError",
    "TrackstarFrameIOManager",
    "TrackstarResource",
    "TrackstarSync",
    "TrackstarSyncComponent",
    "TrackstarTranslator",
    "WriteConfig",
    "__version__",
    "build_payloads",
    "build_trackstar_schema_assets",
    "build_trackstar_sync_assets",
    "build_trackstar_sync_definitions",
    "read_frames",
    "suggest_mapping",
    "write_orders",
    "write_payloads",
]

#: The first release's top-level names that now live in their layer: name -> module.
_MOVED = {
    **dict.fromkeys(
        [
            "TrackstarAuthError",
            "TrackstarBadRequestError",
            "TrackstarConflictError",
            "TrackstarDagsterError",
            "TrackstarNotFoundError",
            "TrackstarNotImplementedError",
            "TrackstarRateLimitError",
            "TrackstarServerError",
            "TrackstarTransportError",
            "TrackstarValidationError",
        ],
        "trackstar_dagster.base.errors",
    ),
    **dict.fromkeys(["NULL_LIKE_STRINGS", "drop_empty", "is_null_like"], "trackstar_dagster.base.nulls"),
    "key_tag": "trackstar_dagster.base.keys",
    **dict.fromkeys(["PRODUCTION_URL", "WriteResponse"], "trackstar_dagster.client"),
    **dict.fromkeys(
        [
            "DriftReport",
            "Problem",
            "body_validator",
            "catalog_frame",
            "parse_json_lenient",
            "schema_drift",
            "write_info_fields",
        ],
        "trackstar_dagster.schema",
    ),
    "PayloadBatch": "trackstar_dagster.mapping",
    **dict.fromkeys(["FailurePolicy", "WriteReport"], "trackstar_dagster.writer"),
    **dict.fromkeys(
        ["build_trackstar_catalog_asset", "build_trackstar_write_info_asset"], "trackstar_dagster.assets"
    ),
    **dict.fromkeys(["sql_results_sink", "sql_row_loader"], "trackstar_dagster.sql"),
    "trackstar_io_manager_resources": "trackstar_dagster.sync",
}


def __getattr__(name: str) -> Any:
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module 'trackstar_dagster' has no attribute {name!r}")
    warnings.warn(
        f"trackstar_dagster.{name} moved: import it from {module}", DeprecationWarning, stacklevel=2
    )
    return getattr(importlib.import_module(module), name)
