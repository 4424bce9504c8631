"""Keeping API keys and access tokens out of logs and error text.

Why a module of its own: the secret registry and the logging filter are process-wide and used by more than
the HTTP plumbing (error messages are redacted in the retry policy; the client registers each key and token
it sees). httpx logs full request URLs at INFO, and Trackstar's connection lookup puts the token in the
query string, so the filter is installed on the httpx/httpcore loggers (and ours) on import.
"""

from __future__ import annotations

import logging
import re
import threading

__all__ = ["install_log_redaction", "redact"]

# ---------------------------------------------------------------------------------------------------------
# Secret redaction (logs of httpx/httpcore and our own messages)
# ---------------------------------------------------------------------------------------------------------

_SECRETS: set[str] = set()
_SECRETS_LOCK = threading.Lock()
_QUERY_SECRET_RE = re.compile(
    r"(?i)((?<![A-Za-z0-9_])(?:access_token|api_key|apikey|token|auth_code|key)=)[^&\s\"'#]+"
)
_REDACTED = "***"


def _register_secret(value: str | None) -> None:
    """Remember a key/token so any log line or error message that contains it gets it masked."""
    if value and len(value) >= 4:
        with _SECRETS_LOCK:
            _SECRETS.add(value)


def redact(text: str) -> str:
    """Mask known secrets and secret-looking query parameters in ``text``."""
    if not text:
        return text
    text = _QUERY_SECRET_RE.sub(r"\1" + _REDACTED, text)
    with _SECRETS_LOCK:
        secrets = sorted(_SECRETS, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, _REDACTED)
    return text


class _RedactingFilter(logging.Filter):
    """Rewrites a log record in place with secrets masked (httpx logs full request URLs at INFO)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record is not ours to fix
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = ()
        return True


_FILTER = _RedactingFilter()
# Logger filters only see records logged on that exact logger, so list httpcore's children too.
_REDACTED_LOGGERS = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
    "trackstar_dagster",
    "trackstar_dagster.client",  # the client's own logger
)


def install_log_redaction() -> None:
    """Attach the redacting filter to the httpx/httpcore loggers (idempotent)."""
    for name in _REDACTED_LOGGERS:
        log = logging.getLogger(name)
        if _FILTER not in log.filters:
            log.addFilter(_FILTER)


install_log_redaction()
