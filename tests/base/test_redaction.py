"""Secrets never reach a log line, whatever module of ours logs it, and the helpers that mask them."""

from __future__ import annotations

import importlib
import logging
import pkgutil

import pytest

import trackstar_dagster
from trackstar_dagster.base.redaction import (
    fingerprint,
    mask_url_password,
    redact,
    register_secret,
    url_has_password,
)

SECRET = "tok-live-7f3a9c2e51"


def our_loggers() -> list[str]:
    """Every logger a module of the package (not the sandbox, a server of its own) has made on import."""
    for info in pkgutil.walk_packages(trackstar_dagster.__path__, "trackstar_dagster."):
        if ".sandbox" not in info.name and not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    made = logging.root.manager.loggerDict  # parents nobody logs on are placeholders, not loggers
    return sorted(
        name
        for name, logger in made.items()
        if name.startswith("trackstar_dagster")
        and ".sandbox" not in name
        and isinstance(logger, logging.Logger)
    )


def test_every_logger_of_ours_masks_a_registered_secret(caplog: pytest.LogCaptureFixture) -> None:
    register_secret(SECRET)
    names = our_loggers()
    assert {"trackstar_dagster.client", "trackstar_dagster.writer", "trackstar_dagster.resource"} <= set(
        names
    )
    with caplog.at_level(logging.DEBUG, logger="trackstar_dagster"):
        for name in names:
            logging.getLogger(name).warning("token %s in a message from %s", SECRET, name)
    leaked = [r.name for r in caplog.records if SECRET in r.getMessage()]
    assert leaked == [], f"loggers that let a token through: {leaked}"
    assert len([r for r in caplog.records if "***" in r.getMessage()]) == len(names)


def test_redact_masks_registered_secrets_query_parameters_and_url_passwords() -> None:
    register_secret(SECRET)
    text = redact(f"GET /connections?access_token={SECRET}&limit=1 postgresql://u:p%40ss@db/x key {SECRET}")
    assert SECRET not in text and "p%40ss" not in text
    assert "access_token=***" in text and "postgresql://u:***@db/x" in text
    assert redact("") == "" and redact("nothing secret here") == "nothing secret here"


def test_url_passwords_are_masked_for_display() -> None:
    assert (
        mask_url_password("postgresql+psycopg://app:s3cr@t/x@db:5432/led")
        == "postgresql+psycopg://app:***@db:5432/led"
    )
    assert mask_url_password("sqlite:///tmp/ledger.sqlite") == "sqlite:///tmp/ledger.sqlite"
    assert url_has_password("postgresql://a:b@h/d") and not url_has_password("postgresql://a@h/d")
    assert not url_has_password(None)


def test_fingerprint_is_short_stable_and_one_way() -> None:
    assert fingerprint(SECRET) == fingerprint(SECRET) and len(fingerprint(SECRET)) == 16
    assert SECRET not in fingerprint(SECRET) and fingerprint("other-token") != fingerprint(SECRET)
    assert fingerprint(None) == fingerprint("") == "-"
