"""Snapshots of write-info documents on disk: what the write path validates against and drift compares to.

A plain directory of JSON files (``<type>/<integration>[@<connection>].json``), so a run reads the schema
the write-info asset last fetched without another API call, and the next fetch can say what changed.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

_SAFE = re.compile(r"[^A-Za-z0-9_.@-]+")


def default_state_dir() -> Path:
    """``$DAGSTER_HOME/trackstar`` (or ``~/.trackstar_dagster``): never relative to the working directory."""
    home = os.environ.get("DAGSTER_HOME")
    return Path(home) / "trackstar" if home else Path.home() / ".trackstar_dagster"


def snapshot_key(integration_type: str, integration_name: str, connection: str | None = None) -> str:
    """``wms/shipbob`` for the integration's generic document, ``wms/shipbob@acme`` for a connection's own."""
    return f"{integration_type}/{integration_name}" + (f"@{connection}" if connection else "")


class SchemaStore:
    """Write-info documents by snapshot key, one JSON file each."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory) if directory else default_state_dir() / "write_info"

    def _path(self, key: str) -> Path:
        kind, _, rest = key.partition("/")
        return self.directory / _SAFE.sub("_", kind) / f"{_SAFE.sub('_', rest)}.json"

    def load(self, key: str) -> dict[str, Any] | None:
        """The snapshot of ``key``, None when there is none yet (a first run)."""
        path = self._path(key)
        if not path.exists():
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def load_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """The snapshots that exist, by key (missing ones left out)."""
        return {k: doc for k in keys if (doc := self.load(k)) is not None}

    def save(self, key: str, doc: dict[str, Any]) -> Path:
        """Atomically replace the snapshot (a crash never leaves half a document)."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
        return path

    def __repr__(self) -> str:
        return f"SchemaStore({str(self.directory)!r})"
