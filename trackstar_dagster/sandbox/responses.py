"""The sandbox's answer shapes: Trackstar's error bodies and the empty answer of a dropped connection.

A module of its own so that both ``app.py`` (management and admin routes) and ``data_routes.py`` (the
``/{vertical}/...`` routes) can build the same answers without importing each other; ``app.py`` re-exports
these names.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response


def error(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    """Trackstar's common error shape ``{"error", "origin"}`` (plus any extra keys)."""
    return JSONResponse({"error": message, "origin": "trackstar", **extra}, status_code=status, headers=headers)


def request_id(request: Request) -> str:
    return request.scope.get("state", {}).get("request_id", "")


def not_found(request: Request, message: str) -> JSONResponse:
    """S2's ``HTTPError`` 404 shape: ``{"error", "id"}``."""
    return error(404, message, id=request_id(request))


def validation_error(fields: dict[str, list[str]], location: str = "json") -> JSONResponse:
    return error(422, "Validation failed", detail={location: fields})


class NoResponse(Response):
    """Sends nothing: the connection was already aborted (the "drop" fault)."""

    def __init__(self) -> None:
        super().__init__()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        return None
