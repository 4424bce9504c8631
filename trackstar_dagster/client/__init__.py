"""The HTTP client for Trackstar: public calls, one send loop, retry policy, endpoints, rate limits, catalog cache.

Knows nothing of Dagster or pandas.
"""

from trackstar_dagster.client.calls import PRODUCTION_URL, TrackstarClient
from trackstar_dagster.client.catalog_cache import clear_catalog_cache
from trackstar_dagster.client.endpoints import WriteResponse
from trackstar_dagster.client.send import LIMIT_WINDOW_S

__all__ = ["LIMIT_WINDOW_S", "PRODUCTION_URL", "TrackstarClient", "WriteResponse", "clear_catalog_cache"]
