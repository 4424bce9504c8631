"""The example's settings: environment variables, with defaults that point at a local Trackstar sandbox.

Pointing at production is only a matter of setting ``TRACKSTAR_BASE_URL``, ``TRACKSTAR_API_KEY`` and the
connections' token variables.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[3]
DEMO_DIR = Path(os.environ.get("TRACKSTAR_EXAMPLE_DIR", PROJECT_ROOT / ".demo"))

SANDBOX_DEFAULTS = {
    "TRACKSTAR_BASE_URL": "http://127.0.0.1:8787",
    "TRACKSTAR_API_KEY": "sandbox-api-key",
    "ACME_WMS_TOKEN": "sandbox-token-wms",
    "GLOBEX_SHIPHERO_TOKEN": "sandbox-token-shiphero",
    "INITECH_SHIPBOB_TOKEN": "sandbox-token-shipbob",
    "TRACKSTAR_EXAMPLE_WAREHOUSE": str(DEMO_DIR / "warehouse.duckdb"),
}

#: connection name -> (token variable, integration name)
CONNECTIONS = {
    "acme_wms": ("ACME_WMS_TOKEN", "wms_sandbox"),
    "globex_shiphero": ("GLOBEX_SHIPHERO_TOKEN", "shiphero"),
    "initech_shipbob": ("INITECH_SHIPBOB_TOKEN", "shipbob"),
}


def apply_sandbox_defaults() -> None:
    """Fill in the local-sandbox defaults for every variable the user has not set."""
    for name, value in SANDBOX_DEFAULTS.items():
        os.environ.setdefault(name, value)


def warehouse_path() -> str:
    return os.environ.get("TRACKSTAR_EXAMPLE_WAREHOUSE", SANDBOX_DEFAULTS["TRACKSTAR_EXAMPLE_WAREHOUSE"])
