"""Typed errors. Messages carry what Trackstar said and the request id; never a key or a token."""

from __future__ import annotations

from typing import Any


class TrackstarDagsterError(Exception):
    """Base of every error this library raises."""


class ConfigError(TrackstarDagsterError):
    """A mapping or resource configuration that cannot work (raised before any row is read or sent)."""


class TrackstarError(TrackstarDagsterError):
    """An answer from Trackstar that is not a success, or no answer at all.

    ``outcome_unknown`` is True when a write may have taken effect although no success came back
    (timeout, 5xx, dropped connection): the caller must reconcile before sending it again.
    """

    outcome_unknown: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error: str | None = None,
        origin: str | None = None,
        detail: Any = None,
        request_id: str | None = None,
        method: str | None = None,
        path: str | None = None,
        retry_after: float | None = None,
        outcome_unknown: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error = error
        self.origin = origin
        self.detail = detail
        self.request_id = request_id
        self.method = method
        self.path = path
        self.retry_after = retry_after
        if outcome_unknown is not None:
            self.outcome_unknown = outcome_unknown

    def __str__(self) -> str:
        parts = [self.message]
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.method and self.path:
            parts.append(f"{self.method} {self.path}")
        if self.origin:
            parts.append(f"origin={self.origin}")
        if self.request_id:
            parts.append(f"request_id={self.request_id}")
        return " | ".join(parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary for results tables and Dagster metadata."""
        return {
            "type": type(self).__name__,
            "status": self.status,
            "error": self.error or self.message,
            "origin": self.origin,
            "detail": self.detail,
            "request_id": self.request_id,
        }


class TrackstarBadRequestError(TrackstarError):
    """400: e.g. an idempotency key reused with another body, or on-demand sync not enabled."""


class TrackstarAuthError(TrackstarError):
    """401/403: the API key or access token is wrong, or the action is disabled for the connection."""


class TrackstarNotFoundError(TrackstarError):
    """404: unknown record or integration."""


class TrackstarConflictError(TrackstarError):
    """409: a request with the same idempotency key is still running."""


class TrackstarValidationError(TrackstarError):
    """422: the body (or a query) was refused; ``field_errors`` maps dotted field paths to messages."""

    @property
    def field_errors(self) -> dict[str, list[str]]:
        return flatten_detail(self.detail)


class TrackstarRateLimitError(TrackstarError):
    """429: over the rate limit; ``retry_after`` is the wait in seconds Trackstar asked for."""


class TrackstarNotImplementedError(TrackstarError):
    """501: the integration does not implement this endpoint. A capability gap, not transient."""


class TrackstarServerError(TrackstarError):
    """5xx. On a write the outcome is unknown: the WMS may have accepted it before the error."""

    outcome_unknown = True


class TrackstarTransportError(TrackstarError):
    """No HTTP answer: timeout, refused or dropped connection.

    ``sent`` is False only when the request surely never left (connection refused before sending).
    """

    def __init__(self, message: str, *, sent: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("outcome_unknown", sent)
        super().__init__(message, **kwargs)
        self.sent = sent


def flatten_detail(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """Flatten a 422 ``detail`` (``{"json": {"line_items": {"0": {"sku": ["msg"]}}}}``) to dotted paths."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            if (
                not prefix
                and key in ("json", "body", "query", "headers", "path", "form")
                and isinstance(value, dict)
            ):
                out.update(flatten_detail(value, ""))
                continue
            path = f"{prefix}.{key}" if prefix else str(key)
            out.update(flatten_detail(value, path))
    elif isinstance(detail, list) and all(isinstance(m, str) for m in detail):
        out[prefix or "_"] = list(detail)
    elif isinstance(detail, list):
        for i, value in enumerate(detail):
            out.update(flatten_detail(value, f"{prefix}.{i}" if prefix else str(i)))
    elif detail is not None:
        out[prefix or "_"] = [str(detail)]
    return out


STATUS_ERRORS: dict[int, type[TrackstarError]] = {
    400: TrackstarBadRequestError,
    401: TrackstarAuthError,
    403: TrackstarAuthError,
    404: TrackstarNotFoundError,
    409: TrackstarConflictError,
    422: TrackstarValidationError,
    429: TrackstarRateLimitError,
    501: TrackstarNotImplementedError,
}


def error_class_for(status: int) -> type[TrackstarError]:
    """The error class for an HTTP status (5xx other than 501 -> server error)."""
    if status in STATUS_ERRORS:
        return STATUS_ERRORS[status]
    if status >= 500:
        return TrackstarServerError
    return TrackstarError
