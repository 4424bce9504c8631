"""When and how long to retry one HTTP attempt against Trackstar.

Why a module of its own: the retry policy is the part of the client that needs the most care (reads are
retried here; writes never: the writer decides them, see ``decide``) and is the one judge of every attempt. It
reads the server's wait (``retry-after`` as seconds or an HTTP date, ``x-ratelimit-reset`` in both
spellings), computes backoff with full jitter, turns an error answer into a typed error, and decides each
attempt: done, raise, or wait and retry. No I/O here: the client sends, sleeps and logs.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC

import httpx

from trackstar_dagster.base.errors import (
    TrackstarError,
    TrackstarTransportError,
    TrackstarValidationError,
    error_class_for,
    flatten_detail,
)
from trackstar_dagster.base.redaction import redact
from trackstar_dagster.client.endpoints import json_or_none

__all__ = ["Outcome", "decide", "error_from_response", "full_jitter_backoff", "retry_wait", "server_wait"]

# ---------------------------------------------------------------------------------------------------------
# The server's wait
# ---------------------------------------------------------------------------------------------------------


def _header(headers: httpx.Headers, *names: str) -> str | None:
    for name in names:
        value = headers.get(name)
        if value is not None and value.strip() != "":
            return value.strip()
    return None


def _parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``retry-after`` value: delta seconds or an HTTP date."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - time.time())


def _parse_reset(value: str | None) -> float | None:
    """Seconds until an ``x-ratelimit-reset``: epoch seconds (also tolerates epoch ms and a plain delta)."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return _parse_retry_after(value)
    if number > 1e12:  # epoch milliseconds
        number /= 1000.0
    if number > 1e9:  # epoch seconds
        return max(0.0, number - time.time())
    return max(0.0, number)  # already a delta


def server_wait(response: httpx.Response) -> float | None:
    """How long the server asked us to wait before retrying, if it said so."""
    headers = response.headers
    wait = _parse_retry_after(
        _header(headers, "retry-after", "x-ratelimit-retry-after", "x-rate-limit-retry-after")
    )
    if wait is not None:
        return wait
    if (
        response.status_code == 429
        or _header(headers, "x-ratelimit-remaining", "x-rate-limit-remaining") == "0"
    ):
        return _parse_reset(_header(headers, "x-ratelimit-reset", "x-rate-limit-reset"))
    return None


# ---------------------------------------------------------------------------------------------------------
# Backoff
# ---------------------------------------------------------------------------------------------------------


def full_jitter_backoff(attempt: int, base: float, cap: float) -> float:
    """Full jitter: uniform(0, min(cap, base * 2**(attempt-1)))."""
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return random.uniform(0.0, max(0.0, ceiling))


def retry_wait(attempt: int, asked: float | None, backoff: Callable[[int], float], max_wait: float) -> float:
    """The server's wait wins over our backoff (plus a little jitter so tasks don't stampede)."""
    if asked is not None:
        wait = asked + random.uniform(0.0, min(0.25, 0.1 * asked + 0.01))
    else:
        wait = backoff(attempt)
    return min(wait, max_wait)


# ---------------------------------------------------------------------------------------------------------
# The attempt decision
# ---------------------------------------------------------------------------------------------------------


_TRANSPORT_RETRYABLE = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
# Raised before a byte of the request left: waiting for a pool slot or opening the connection.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to do after one attempt: ``response`` (done), ``error`` (raise) or ``error`` + ``wait`` (retry)."""

    response: httpx.Response | None = None
    error: TrackstarError | None = None
    wait: float | None = None


def error_from_response(method: str, path: str, response: httpx.Response) -> TrackstarError:
    """The typed error for a 4xx/5xx answer: message, detail and request id, secrets masked."""
    status = response.status_code
    body = json_or_none(response)
    error = origin = detail = None
    if isinstance(body, dict):
        error = body.get("error") if isinstance(body.get("error"), str) else None
        origin = body.get("origin") if isinstance(body.get("origin"), str) else None
        detail = body.get("detail")
        if detail is None and isinstance(body.get("errors"), dict | list):
            detail = body.get("errors")
    elif body is None and response.content:
        error = response.text[:200].strip() or None
    cls = error_class_for(status)
    message = error or response.reason_phrase or f"HTTP {status}"
    if cls is TrackstarValidationError and detail is not None:
        fields = flatten_detail(detail)
        if fields:
            summary = "; ".join(f"{k}: {', '.join(v)}" for k, v in list(fields.items())[:10])
            message = f"{message} ({summary})"
    return cls(
        redact(message),
        status=status,
        error=redact(error) if error else None,
        origin=origin,
        detail=detail,
        request_id=_header(response.headers, "x-request-id"),
        method=method,
        path=path,
        retry_after=server_wait(response),
    )


def decide(
    method: str,
    path: str,
    is_write: bool,
    attempt: int,
    response: httpx.Response | None,
    exc: Exception | None,
    max_retries: int,
    wait_for: Callable[[int, float | None], float],
) -> Outcome:
    """The client's retry policy: reads only.

    A read is retried on 429, 5xx (not 501), timeouts and dropped connections, ``max_retries`` times, waiting
    ``wait_for(attempt, asked)`` (``asked``: the server's wait, or None for plain backoff). A write is never
    retried here: it is sent once and its error raised, typed (``outcome_unknown`` where it may have taken
    effect, ``retry_after`` on a 429, ``sent=False`` when it surely left nothing), so that the writer, which
    holds the ledger and the record's attempts, decides every write retry and no 429 is waited out twice.
    """
    can_retry = not is_write and attempt <= max_retries
    if exc is not None:
        sent = not isinstance(exc, _NOT_SENT)
        kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "transport error"
        detail = redact(str(exc)) or type(exc).__name__
        transport_error = TrackstarTransportError(
            f"{kind} ({type(exc).__name__}: {detail})" + ("" if sent else " before the request was sent"),
            sent=sent,
            method=method,
            path=path,
        )
        if isinstance(exc, _TRANSPORT_RETRYABLE) and can_retry:
            return Outcome(error=transport_error, wait=wait_for(attempt, None))
        return Outcome(error=transport_error)
    assert response is not None
    status = response.status_code
    if status < 400:
        return Outcome(response=response)
    err = error_from_response(method, path, response)
    if is_write and status >= 500:
        err.outcome_unknown = True
    retryable = status == 429 or (status >= 500 and status != 501)
    if retryable and can_retry:
        return Outcome(error=err, wait=wait_for(attempt, err.retry_after))
    return Outcome(error=err)
