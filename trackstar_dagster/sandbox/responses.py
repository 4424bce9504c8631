"""The sandbox's answer shapes (Trackstar's error bodies, the empty answer of a dropped connection) and the
request-body limits (size, JSON nesting depth) every route that reads a body goes through.

A module of its own so that every route group (``catalog_routes``, ``admin_routes``, ``data_routes``) and the
app's error handlers build the same answers. The limits and why they are what they are: ``app.py``'s module
docstring.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response


def error(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    """Trackstar's common error shape ``{"error", "origin"}`` (plus any extra keys)."""
    return JSONResponse(
        {"error": message, "origin": "trackstar", **extra}, status_code=status, headers=headers
    )


def request_id(request: Request) -> str:
    """The ``X-Request-Id`` the middleware gave this request (404 bodies and the error log carry it)."""
    return request.scope.get("state", {}).get("request_id", "")


def not_found(request: Request, message: str) -> JSONResponse:
    """S2's ``HTTPError`` 404 shape: ``{"error", "id"}``."""
    return error(404, message, id=request_id(request))


def validation_error(fields: dict[str, list[str]], location: str = "json") -> JSONResponse:
    """Trackstar's 422: field path -> messages, under ``detail.json`` (a body) or ``detail.query``."""
    return error(422, "Validation failed", detail={location: fields})


class NoResponse(Response):
    """Sends nothing: the connection was already aborted (the "drop" fault)."""

    def __init__(self) -> None:
        super().__init__()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        return None


# -- request bodies --------------------------------------------------------------------------------------
MIB = 1024 * 1024
MAX_WRITE_BODY = MIB  # a data write (POST/PUT/PATCH/DELETE /{vertical}/...)
MAX_ADMIN_BODY = 4 * MIB  # an admin body (/_sandbox/write-info/{name}, /_sandbox/configure)
MAX_JSON_DEPTH = 64  # objects and arrays nested in one another, the outermost counting 1


def body_too_large(limit: int) -> JSONResponse:
    """The 413 for a body over ``limit``, naming the limit so a client knows what to send instead."""
    size = f"{limit // MIB} MiB ({limit} bytes)" if limit % MIB == 0 else f"{limit} bytes"
    return error(413, f"Request body too large: the limit is {size}.")


async def read_body(request: Request, limit: int) -> bytes | JSONResponse:
    """The body, or a 413 once it is known to pass ``limit``: from ``Content-Length`` before anything is read,
    else (chunked) as soon as the bytes read pass it. What is left unread is discarded by uvicorn."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return body_too_large(limit)
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            return body_too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


class JSONTooDeep(ValueError):
    """A JSON document nested more than ``MAX_JSON_DEPTH`` levels."""

    def __init__(self, limit: int = MAX_JSON_DEPTH) -> None:
        super().__init__(f"JSON nested more than {limit} levels deep.")


def exceeds_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when dicts/lists are nested more than ``limit`` deep in ``value`` (iterative: any depth is safe)."""
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


def parse_json(raw: bytes, limit: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` that refuses documents nested more than ``limit`` levels (``JSONTooDeep``, also for
    ones too deep for Python's parser); ``ValueError`` for anything else that is not JSON."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise JSONTooDeep(limit) from None
    if exceeds_depth(value, limit):
        raise JSONTooDeep(limit)
    return value
