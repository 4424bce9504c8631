"""Where the ledger lives: ``$TRACKSTAR_DAGSTER_LEDGER_URL``, else under ``$DAGSTER_HOME``, else the home dir.

Never relative to the working directory: ``dagster dev``, the daemon and tests all start elsewhere, and a
ledger that moves with the working directory is a lost ledger (every record would be looked up again).
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import make_url

from ..base.errors import ConfigError

#: Environment variable that overrides the default ledger location (any SQLAlchemy URL).
LEDGER_URL_ENV = "TRACKSTAR_DAGSTER_LEDGER_URL"


def default_ledger_url() -> str:
    """``$TRACKSTAR_DAGSTER_LEDGER_URL``, else ``$DAGSTER_HOME/trackstar/ledger.sqlite``, else the home dir.

    Never relative to the working directory: ``dagster dev``, the daemon and tests all start elsewhere.
    """
    env = os.environ.get(LEDGER_URL_ENV)
    if env:
        return env
    home = os.environ.get("DAGSTER_HOME")
    base = Path(home).expanduser() / "trackstar" if home else Path.home() / ".trackstar_dagster"
    return f"sqlite:///{(base / 'ledger.sqlite').resolve()}"


def normalise_url(url: str | os.PathLike[str] | None) -> str:
    """An absolute SQLAlchemy URL for ``url`` (None: the default; a plain path: an absolute SQLite file)."""
    if url is None:
        return default_ledger_url()
    text = os.fspath(url)
    if "://" not in text:  # a plain file path
        path = Path(text).expanduser()
        if not path.is_absolute():
            raise ConfigError(f"ledger path {text!r} is relative; give an absolute path or a SQLAlchemy URL")
        return f"sqlite:///{path}"
    parsed = make_url(text)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        db = parsed.database
        if not db.startswith("file:") and not Path(db).expanduser().is_absolute():
            raise ConfigError(
                f"ledger SQLite file {db!r} is relative to the working directory; use sqlite:////absolute/path"
            )
    return text
