"""Trackstar's response shapes and URL paths, as plain functions over JSON and strings.

Why a module of its own: what a response looks like (``data`` as list or dict, ``next_token``, the write
answer) and how a path is spelled (quoted segments, no query string) are facts about the API, not about
sending requests; keeping them apart leaves the client with only the plumbing and the public methods.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field

from trackstar_dagster.base.errors import TrackstarError, TrackstarNotFoundError

__all__ = [
    "WriteResponse",
    "clean_path",
    "connection_path",
    "data_dict",
    "data_list",
    "integrations_path",
    "json_or_none",
    "next_token",
    "one_connection",
    "page_params",
    "record_path",
    "response_body",
    "write_info_path",
    "write_method",
    "write_response",
]

_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# ---------------------------------------------------------------------------------------------------------
# Models and helpers
# ---------------------------------------------------------------------------------------------------------


class WriteResponse(BaseModel):
    """The answer to a write: Trackstar's ``{"data", "id", "unused_fields"}`` plus how we got it."""

    model_config = ConfigDict(frozen=True)

    id: str | None = None
    data: dict[str, Any] | None = None
    unused_fields: list[str] = Field(default_factory=list)
    status_code: int = 200
    request_id: str | None = None
    replayed: bool = False
    attempts: int = 1
    elapsed_s: float = 0.0
    idempotency_key: str | None = None


def json_or_none(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def page_params(filters: Mapping[str, Any] | None, limit: int, token: str | None) -> dict[str, str]:
    params = {k: filter_value(v) for k, v in (filters or {}).items() if v is not None}
    params["limit"] = str(limit)
    if token:
        params["page_token"] = token
    return params


def filter_value(value: Any) -> str:
    """Query-string form of a filter value: lists comma-joined (``in``/``nin``), datetimes ISO 8601 UTC."""
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(filter_value(v) for v in value)
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat(timespec="seconds") + "Z"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def clean_path(path: str) -> str:
    """Path for URLs and errors: leading slash, no query string."""
    path = path.split("?", 1)[0]
    return path if path.startswith("/") else "/" + path


# ---------------------------------------------------------------------------------------------------------
# Response shapes
# ---------------------------------------------------------------------------------------------------------


def path_segment(value: str) -> str:
    return quote(str(value), safe="")


def integrations_path(integration_type: str, name: str | None = None) -> str:
    path = f"/integrations/{path_segment(integration_type)}"
    return f"{path}/{path_segment(name)}" if name else path


def write_info_path(integration_type: str, integration_name: str) -> str:
    return f"/integrations/{path_segment(integration_type)}/{path_segment(integration_name)}/write-info"


def connection_path(connection_id: str) -> str:
    """``/connections/{connection_id}`` (the id is one path segment, whatever it holds)."""
    if not str(connection_id or "").strip():
        raise ValueError("connection_id is empty")
    return f"/connections/{path_segment(connection_id)}"


def record_path(resource_path: str, record_id: str) -> str:
    return f"{clean_path(resource_path).rstrip('/')}/{path_segment(record_id)}"


def write_method(method: str) -> str:
    method = method.upper()
    if method not in _WRITE_METHODS:
        raise ValueError(f"not a write method: {method}")
    return method


def response_body(response: httpx.Response, method: str, path: str) -> Any:
    body = json_or_none(response)
    if body is None and response.content:
        raise TrackstarError(
            "response is not JSON",
            status=response.status_code,
            request_id=response.headers.get("x-request-id"),
            method=method,
            path=path,
        )
    return body


def data_list(body: Any) -> list[dict[str, Any]]:
    if isinstance(body, dict):
        data = body.get("data")
        if isinstance(data, list):
            return data
        if isinstance(data, dict):
            return [data]
        return []
    if isinstance(body, list):
        return body
    return []


def data_dict(body: Any) -> dict[str, Any]:
    if isinstance(body, dict):
        data = body.get("data")
        return data if isinstance(data, dict) else body
    return {}


def next_token(body: Any) -> str | None:
    if isinstance(body, dict):
        token = body.get("next_token")
        if token not in (None, ""):
            return str(token)
    return None


def one_connection(body: Any, path: str = "/connections") -> dict[str, Any]:
    """The connection in a ``GET /connections?access_token=`` or ``GET /connections/{id}`` answer."""
    if isinstance(body, dict) and "data" in body:
        data = body["data"]
        if isinstance(data, list):
            if not data:
                raise TrackstarNotFoundError("no such connection", status=404, path=path)
            return data[0]
        if isinstance(data, dict):
            return data
    if isinstance(body, dict) and body:
        return body
    raise TrackstarNotFoundError("no such connection", status=404, path=path)


def write_response(response: httpx.Response, attempts: int, elapsed: float, key: str) -> WriteResponse:
    body = json_or_none(response)  # a success is a success even if its body is odd: tolerate
    body = body if isinstance(body, dict) else {}
    data = body.get("data") if isinstance(body.get("data"), dict) else None
    record_id = body.get("id") or (data or {}).get("id")
    unused = body.get("unused_fields") or []
    return WriteResponse(
        id=str(record_id) if record_id is not None else None,
        data=data,
        unused_fields=[str(u) for u in unused] if isinstance(unused, list) else [],
        status_code=response.status_code,
        request_id=response.headers.get("x-request-id"),
        replayed=(response.headers.get("idempotent-replayed") or "").strip().lower() == "true",
        attempts=attempts,
        elapsed_s=elapsed,
        idempotency_key=key,
    )
