"""trackstar-dagster: the Dagster integration for the Trackstar API."""

from dagster_shared.libraries import DagsterLibraryRegistry

from trackstar_dagster.errors import (
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
from trackstar_dagster.nulls import NULL_LIKE_STRINGS, drop_empty, is_null_like
from trackstar_dagster.version import __version__

DagsterLibraryRegistry.register("trackstar-dagster", __version__, is_dagster_package=False)

__all__ = [
    "NULL_LIKE_STRINGS",
    "ConfigError",
    "TrackstarAuthError",
    "TrackstarBadRequestError",
    "TrackstarConflictError",
    "TrackstarDagsterError",
    "TrackstarError",
    "TrackstarNotFoundError",
    "TrackstarNotImplementedError",
    "TrackstarRateLimitError",
    "TrackstarServerError",
    "TrackstarTransportError",
    "TrackstarValidationError",
    "__version__",
    "drop_empty",
    "is_null_like",
]
