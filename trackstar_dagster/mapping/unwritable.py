"""Screens of unwritable cells: coerced values no JSON text can hold, refused before any body is built.

Why a module of its own: coercion guarantees types, not writability; this screen is the one place that
finds what would make ``orjson`` raise later (a lone surrogate, bytes, an integer beyond 64 bits), so that
nothing a cell holds ever raises out of a build: it rejects its record instead.
"""

from __future__ import annotations

import numpy as np
import orjson

from trackstar_dagster.mapping.coercers import INT64_MIN
from trackstar_dagster.mapping.fieldspec import Coerced

_WRITABLE_SCALARS = (type(None), bool, int, float)


def unwritable(values: np.ndarray, kind: str) -> dict[int, str]:
    """Positions of coerced values that cannot be written as JSON text, with why (e.g. a lone surrogate).

    Coercion guarantees numbers, booleans and strings of the right type; what can still be in a value is text
    that is not valid Unicode (``"\\ud800"`` from a broken export), or in an object/array/untyped field a
    type JSON has no form for (bytes, a set) or an integer beyond 64 bits. Numeric and boolean kinds are
    range-checked by coercion and skipped here; all-valid text is screened in one pass.
    """
    if kind in ("integer", "number", "boolean") or not len(values):
        return {}
    if kind == "string":  # str or None only: ASCII (the usual case) is known per string, else one encode
        try:
            texts = list(filter(None, values.tolist()))
            if all(map(str.isascii, texts)):
                return {}
            "".join(texts).encode("utf-8")
            return {}
        except (TypeError, UnicodeEncodeError):  # a lone surrogate somewhere (or, defensively, a non-string)
            pass
    out: dict[int, str] = {}
    for pos, v in enumerate(values.tolist()):
        t = type(v)
        if t is str:
            if not v.isascii():
                try:
                    v.encode("utf-8")
                except UnicodeEncodeError:
                    out[pos] = "text with a lone surrogate (not valid Unicode)"
        elif t in _WRITABLE_SCALARS:
            if t is int and not INT64_MIN <= v <= 2**64 - 1:
                out[pos] = "an integer beyond the 64-bit range"
        else:
            try:
                orjson.dumps(v, option=orjson.OPT_SORT_KEYS)
            except TypeError as exc:  # orjson.JSONEncodeError is one
                msg = str(exc)
                out[pos] = (
                    "holds text with a lone surrogate (not valid Unicode)"
                    if "surrogate" in msg
                    else "holds an integer beyond the 64-bit range"
                    if "64-bit" in msg
                    else f"{t.__name__} is not a JSON value ({msg})"
                )
    return out


def writable(c: Coerced, path: str) -> Coerced:
    """``c`` with every value ``unwritable`` finds refused (bad, with its reason, None): a copy if any."""
    found = unwritable(c.values, c.kind)
    if not found:
        return c
    at = list(found)
    values, bad, null = c.values.copy(), c.bad.copy(), c.null.copy()
    values[at] = None
    bad[at] = True
    null[at] = False
    reasons = {**c.reasons, **{p: f"{path}: {why}" for p, why in found.items()}}
    return Coerced(values, null, bad, reasons, c.kind, c.distinct, path)
