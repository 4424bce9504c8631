"""Keeping API keys and access tokens out of logs and error text.

Why a module of its own: the secret registry and the logging filter are process-wide and used by more than
the HTTP plumbing (error messages are redacted in the retry policy; the client registers each key and token
it sees). httpx logs full request URLs at INFO, and Trackstar's token look-up (only when a resource opts in
with ``lookup_integration_by_token``) puts the token in the query string, so the filter is installed on the
httpx/httpcore loggers (and ours) on import. Database URLs (the ledger's) have their password masked too.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading

__all__ = [
    "fingerprint",
    "install_log_redaction",
    "mask_url_password",
    "redact",
    "redacted_logger",
    "register_secret",
    "url_has_password",
]

# ---------------------------------------------------------------------------------------------------------
# Secret redaction (logs of httpx/httpcore and our own messages)
# ---------------------------------------------------------------------------------------------------------

_SECRETS: set[str] = set()
_SECRETS_LOCK = threading.Lock()
_QUERY_SECRET_RE = re.compile(
    r"(?i)((?<![A-Za-z0-9_])(?:access_token|api_key|apikey|token|auth_code|key)=)[^&\s\"'#]+"
)
_REDACTED = "***"
# ``scheme://user:password@`` inside any text (log lines, messages): the password up to the next '@'
_URL_PASSWORD_RE = re.compile(r"(?i)(\b[a-z][a-z0-9+.\-]*://[^:@/\s]*:)[^@\s]+@")
# one whole URL: ``scheme://user:`` then everything up to the last '@' (a password may hold '/' or '@')
_ONE_URL_PASSWORD_RE = re.compile(r"(?is)^([a-z][a-z0-9+.\-]*://[^:@/\s]*:)(.*)@([^@]*)$")


def mask_url_password(url: str | None) -> str | None:
    """``postgresql+psycopg://user:***@host/db``: a URL with its password (if any) masked, for display."""
    if not url or "://" not in url:
        return url
    match = _ONE_URL_PASSWORD_RE.match(url)
    if match is None or not match.group(2):
        return url
    return f"{match.group(1)}{_REDACTED}@{match.group(3)}"


def url_has_password(url: str | None) -> bool:
    """Whether a URL carries a password (``scheme://user:password@host``)."""
    return bool(url) and mask_url_password(url) != url


def register_secret(value: str | None) -> None:
    """Remember a key/token so any log line or error message that contains it gets it masked."""
    if value and len(value) >= 4:
        with _SECRETS_LOCK:
            _SECRETS.add(value)


def redact(text: str) -> str:
    """Mask known secrets and secret-looking query parameters in ``text``."""
    if not text:
        return text
    text = _QUERY_SECRET_RE.sub(r"\1" + _REDACTED, text)
    text = _URL_PASSWORD_RE.sub(r"\1" + _REDACTED + "@", text)
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
# A filter on a logger sees only the records logged on that very logger, not those its children pass up:
# httpcore's children are listed one by one, and every module of ours takes its logger from ``redacted_logger``.
_REDACTED_LOGGERS = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
    "trackstar_dagster",
)


def redacted_logger(name: str) -> logging.Logger:
    """The logger ``name`` with the redacting filter on it: how every module of ours gets its logger."""
    log = logging.getLogger(name)
    if _FILTER not in log.filters:
        log.addFilter(_FILTER)
    return log


def install_log_redaction() -> None:
    """Attach the redacting filter to the httpx/httpcore loggers and our root logger (idempotent)."""
    for name in _REDACTED_LOGGERS:
        redacted_logger(name)


install_log_redaction()


def fingerprint(secret: str | None) -> str:
    """A short, stable, one-way name for a secret: safe to use as a dict key or in a log line."""
    if not secret:
        return "-"
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()[:16]
