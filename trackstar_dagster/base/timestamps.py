"""Trackstar's timestamps read one way everywhere (the client, the sandbox): ISO 8601, ``Z`` or an offset."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

__all__ = ["parse_timestamp"]


def parse_timestamp(value: Any) -> datetime | None:
    """An aware datetime (UTC when the text has no offset), None when ``value`` is not a timestamp's text."""
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value)
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
