"""Connections declared in bulk: by environment variable prefix, in a file, or by a function called at run time.

Why a module of its own: a company with one connection per customer account has hundreds, and one line (and
one ``EnvVar``) each in the resource does not scale. Only the *name* of a source goes in Dagster's config (a
prefix, a path, an import path); the tokens are read here, in the run's process, and each is registered for
redaction (``base.redaction.register_secret``) the moment it is read. No error message, warning or repr holds
a token: errors name the variable, the file's entry or the function's item instead.

The environment convention (``prefix`` e.g. ``TRACKSTAR_CONN_``; ``<NAME>`` may hold underscores and is
lower-cased into the connection's name):

- ``<prefix><NAME>_TOKEN``: the access token (required);
- ``<prefix><NAME>_INTEGRATION``: ``shipbob`` or ``wms/shipbob`` (integration type defaults to ``wms``), or
- ``<prefix><NAME>_CONNECTION_ID``: Trackstar's id of the connection, its integration looked up with the API key.

A file (YAML or JSON) is a list of ``{name, access_token, integration_type, integration_name | connection_id}``
(or ``integration: type/name``), or a mapping with such a list under ``connections``. A function
(``"pkg.module:func"``) takes no argument and returns an iterable of ``(name, integration, token)`` tuples,
dicts with the file's keys, or objects with those attributes (``TrackstarConnection``, ...).
"""

from __future__ import annotations

import importlib
import os
import stat
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trackstar_dagster.base.errors import ConfigError
from trackstar_dagster.base.redaction import redact, register_secret

__all__ = [
    "ConnectionsFileWarning",
    "DeclaredConnection",
    "declare_all",
    "from_env",
    "from_file",
    "from_function",
    "merge_declared",
    "split_integration",
]

ENV_SUFFIXES = ("_CONNECTION_ID", "_INTEGRATION", "_TOKEN")
ENTRY_KEYS = frozenset(
    {"name", "access_token", "integration_type", "integration_name", "connection_id", "integration"}
)


class ConnectionsFileWarning(UserWarning):
    """The connections file can be read by its group or by others: its tokens are readable by them too."""


@dataclass(frozen=True)
class DeclaredConnection:
    """A connection as declared (its integration maybe still unknown); the token is kept out of the repr."""

    name: str
    access_token: str = field(repr=False)
    integration_type: str = "wms"
    integration_name: str | None = None
    connection_id: str | None = None
    source: str = ""  # where it was declared, for error messages: "connections[3]", "$ACME_TOKEN", ...


def split_integration(text: str, default_type: str = "wms") -> tuple[str, str]:
    """``"wms/shipbob"`` -> ``("wms", "shipbob")``; ``"shipbob"`` -> ``(default_type, "shipbob")``."""
    itype, _, name = text.strip().rpartition("/")
    return (itype.strip() or default_type), name.strip()


def _declared(
    name: str,
    token: Any,
    integration_type: str,
    integration_name: str | None,
    connection_id: str | None,
    source: str,
    need_integration: bool,
) -> DeclaredConnection:
    """One checked declaration; ``ConfigError`` names ``source``, never the token."""
    if not isinstance(token, str) or not token.strip():
        raise ConfigError(f"Trackstar connection {name!r} ({source}): the access token is missing or empty")
    token = token.strip()  # a secret file's trailing newline is no part of the token
    register_secret(token)  # before anything can log it
    if not name:
        raise ConfigError(f"a Trackstar connection ({source}) has no name")
    if need_integration and not integration_name and not connection_id:
        raise ConfigError(
            f"Trackstar connection {name!r} ({source}): the integration is unknown; give its integration "
            "(e.g. 'shipbob' or 'wms/shipbob') or its connection_id"
        )
    return DeclaredConnection(
        name, token, integration_type, integration_name or None, connection_id or None, source
    )


# -- environment variables ------------------------------------------------------------------------------


def from_env(
    prefix: str, environ: Mapping[str, str] | None = None, *, need_integration: bool = True
) -> list[DeclaredConnection]:
    """Every ``<prefix><NAME>_TOKEN`` with its ``_INTEGRATION`` or ``_CONNECTION_ID``, sorted by name."""
    if not prefix:
        raise ConfigError("connections_from_env is empty: give the variables' prefix, e.g. 'TRACKSTAR_CONN_'")
    env = os.environ if environ is None else environ
    parts: dict[str, dict[str, tuple[str, str]]] = {}  # NAME -> suffix -> (variable, value)
    for var in sorted(v for v in env if v.startswith(prefix)):
        rest = var[len(prefix) :]
        suffix = next((s for s in ENV_SUFFIXES if rest.endswith(s)), None)
        if suffix is None:
            raise ConfigError(
                f"environment variable {var} starts with connections_from_env={prefix!r} but ends in none of "
                f"{', '.join(ENV_SUFFIXES)}: rename it, or choose a prefix only these variables use"
            )
        parts.setdefault(rest[: -len(suffix)], {})[suffix] = (var, env[var])
    if not parts:
        hint = sorted(v for v in env if v.endswith("_TOKEN"))[:5]
        raise ConfigError(
            f"connections_from_env={prefix!r}: no environment variable starts with it (expected "
            f"{prefix}<NAME>_TOKEN with {prefix}<NAME>_INTEGRATION or {prefix}<NAME>_CONNECTION_ID)"
            + (f"; variables ending in _TOKEN: {', '.join(hint)}" if hint else "")
        )
    out: dict[str, DeclaredConnection] = {}
    for raw, found in sorted(parts.items()):
        name = raw.lower()
        if "_TOKEN" not in found:
            var = next(iter(found.values()))[0]
            raise ConfigError(f"environment variable {var} is set but {prefix}{raw}_TOKEN is not")
        token_var, token = found["_TOKEN"]
        if not token.strip():
            raise ConfigError(f"environment variable {token_var} is empty")
        for suffix in ("_INTEGRATION", "_CONNECTION_ID"):
            if suffix in found and not found[suffix][1].strip():
                raise ConfigError(f"environment variable {found[suffix][0]} is empty")
        if need_integration and "_INTEGRATION" not in found and "_CONNECTION_ID" not in found:
            raise ConfigError(
                f"environment variable {token_var} is set but neither {prefix}{raw}_INTEGRATION "
                f"(e.g. 'shipbob' or 'wms/shipbob') nor {prefix}{raw}_CONNECTION_ID is"
            )
        itype, iname = (
            split_integration(found["_INTEGRATION"][1]) if "_INTEGRATION" in found else ("wms", None)
        )
        conn_id = found["_CONNECTION_ID"][1].strip() if "_CONNECTION_ID" in found else None
        if name in out:
            raise ConfigError(
                f"environment variables {out[name].source} and {token_var} both declare connection {name!r} "
                "(names are lower-cased)"
            )
        out[name] = _declared(name, token, itype, iname, conn_id, token_var, need_integration)
    return list(out.values())


# -- a file ---------------------------------------------------------------------------------------------


def _from_entry(entry: Any, where: str, need_integration: bool) -> DeclaredConnection:
    """One entry of a file or one dict item of a function: the keys of ``ENTRY_KEYS``."""
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: not a mapping of {', '.join(sorted(ENTRY_KEYS))}")
    unknown = sorted(str(k) for k in entry if k not in ENTRY_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown} (known: {sorted(ENTRY_KEYS)})")
    name = str(entry.get("name") or "").strip()
    itype = str(entry.get("integration_type") or "wms")
    iname = entry.get("integration_name")
    if entry.get("integration"):
        if iname:
            raise ConfigError(f"{where}: give integration or integration_name, not both")
        itype, iname = split_integration(str(entry["integration"]), itype)
    conn_id = entry.get("connection_id")
    return _declared(
        name,
        entry.get("access_token"),
        itype,
        str(iname) if iname else None,
        str(conn_id) if conn_id else None,
        where,
        need_integration,
    )


def from_file(path: str | os.PathLike[str], *, need_integration: bool = True) -> list[DeclaredConnection]:
    """The connections of a YAML or JSON file; a warning when its group or others may read it."""
    p = Path(os.path.expanduser(os.fspath(path)))
    try:
        mode = p.stat().st_mode
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the connections file {p}: {exc.strerror or exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        warnings.warn(
            f"the connections file {p} can be read by its group or others (mode {stat.filemode(mode)}): "
            f"its access tokens too. chmod 600 {p}",
            ConnectionsFileWarning,
            stacklevel=2,
        )
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # the parser's message quotes the offending line, which may hold a token: say where, not what
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"the connections file {p} is not valid YAML or JSON{at}") from None
    if isinstance(data, Mapping) and set(data) == {"connections"}:
        data = data["connections"]
    if not isinstance(data, list):
        raise ConfigError(
            f"the connections file {p} must hold a list of connections (or `connections: [...]`)"
        )
    if not data:
        raise ConfigError(f"the connections file {p} declares no connection")
    out = []
    for i, entry in enumerate(data):
        label = entry.get("name") if isinstance(entry, Mapping) else None
        where = f"{p} entry {i}" + (f" ({label!r})" if isinstance(label, str) else "")
        out.append(_from_entry(entry, where, need_integration))
    return out


# -- a function -----------------------------------------------------------------------------------------


def load_function(import_path: str) -> Any:
    """``"pkg.module:func"`` (or ``"pkg.module:Class.method"``) -> the object it names."""
    module_name, sep, attr = import_path.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"connections_function={import_path!r}: give it as 'package.module:function'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"connections_function={import_path!r}: cannot import {module_name}: {exc}"
        ) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"connections_function={import_path!r}: {module_name} has no {attr}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"connections_function={import_path!r} is not callable")
    return obj


def _from_item(item: Any, where: str, need_integration: bool) -> DeclaredConnection:
    if isinstance(item, Mapping):
        return _from_entry(item, where, need_integration)
    if isinstance(item, tuple):
        if len(item) != 3:
            raise ConfigError(f"{where}: a tuple of {len(item)} values; give (name, integration, token)")
        name, integration, token = item
        if not isinstance(integration, str) or not integration.strip():
            raise ConfigError(f"{where}: the integration (e.g. 'shipbob' or 'wms/shipbob') is missing")
        itype, iname = split_integration(integration)
        return _declared(str(name or "").strip(), token, itype, iname, None, where, need_integration)
    if hasattr(item, "name") and hasattr(item, "access_token"):
        return _declared(
            str(item.name or "").strip(),
            item.access_token,
            str(getattr(item, "integration_type", None) or "wms"),
            getattr(item, "integration_name", None),
            getattr(item, "connection_id", None),
            where,
            need_integration,
        )
    raise ConfigError(
        f"{where}: a {type(item).__name__}; give (name, integration, token), a dict or a connection"
    )


def from_function(import_path: str, *, need_integration: bool = True) -> list[DeclaredConnection]:
    """Call the function at ``import_path`` (no arguments) and read its connections."""
    func = load_function(import_path)
    try:
        items = list(func())
    except ConfigError:
        raise
    except Exception as exc:
        # redact: its message may quote a token we have not seen yet, so the query-string rules at least
        raise ConfigError(
            f"connections_function={import_path!r} raised {type(exc).__name__}: {redact(str(exc))}"
        ) from None
    if not items:
        raise ConfigError(f"connections_function={import_path!r} returned no connection")
    return [_from_item(item, f"{import_path} item {i}", need_integration) for i, item in enumerate(items)]


# -- together -------------------------------------------------------------------------------------------


def declare_all(
    explicit: Iterable[Any],
    *,
    env_prefix: str | None = None,
    file: str | None = None,
    function: str | None = None,
    need_integration: bool = True,
) -> dict[str, DeclaredConnection]:
    """Name -> connection: the explicit ones (``TrackstarConnection``s, as given) and each source's."""
    groups = [
        [
            DeclaredConnection(
                c.name,
                c.access_token,
                c.integration_type,
                c.integration_name,
                c.connection_id,
                f"connections[{i}]",
            )
            for i, c in enumerate(explicit)
        ]
    ]
    for conn in groups[0]:
        if type(conn.access_token) is str:  # not an EnvVar (a str naming the variable) at definition time
            register_secret(conn.access_token)
    if env_prefix is not None:
        groups.append(from_env(env_prefix, need_integration=need_integration))
    if file is not None:
        groups.append(from_file(file, need_integration=need_integration))
    if function is not None:
        groups.append(from_function(function, need_integration=need_integration))
    return merge_declared(groups)


def merge_declared(groups: Iterable[Iterable[DeclaredConnection]]) -> dict[str, DeclaredConnection]:
    """Name -> connection over every source; a name declared twice is a ``ConfigError`` naming both places."""
    out: dict[str, DeclaredConnection] = {}
    twice: dict[str, list[str]] = {}
    for group in groups:
        for conn in group:
            if conn.name in out:
                twice.setdefault(conn.name, [out[conn.name].source]).append(conn.source)
            else:
                out[conn.name] = conn
    if twice:
        shown = "; ".join(f"{name!r} by {', '.join(where)}" for name, where in sorted(twice.items())[:10])
        more = f" (and {len(twice) - 10} more)" if len(twice) > 10 else ""
        raise ConfigError(f"Trackstar connection name(s) declared more than once: {shown}{more}")
    return out
