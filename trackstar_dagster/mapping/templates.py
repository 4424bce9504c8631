"""Body JSON as text: distinct values encoded once, bodies joined by compiled per-shape f-string builders.

Why a module of its own: turning encoded pieces into compact, key-sorted JSON text is a self-contained
code-generation job (escaping for JSON, escaping for a Python f-string literal, ``eval`` of the builder)
with no knowledge of records, rejects or schemas. ``bodies`` decides what goes into a body; this
module only writes the text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from trackstar_dagster.mapping.cells import obj_array

_DUMPS_OPTS = orjson.OPT_SORT_KEYS

ESCAPE = re.compile(r'["\\\x00-\x1f\x7f\u2028\u2029]')


def json_text(text: str) -> str:
    """A string as JSON text; plain strings without an ``orjson`` call."""
    return f'"{text}"' if not ESCAPE.search(text) else orjson.dumps(text).decode()


def encode_values(uvals: np.ndarray) -> np.ndarray:
    """JSON text of each distinct value (None stays None), key-sorted for objects."""
    values = uvals.tolist()
    strs = values[:-1] if values and values[-1] is None else values
    if strs and all(type(x) is str for x in strs) and not ESCAPE.search("|".join(strs)):
        return obj_array([*('"' + x + '"' for x in strs), *([None] if len(strs) < len(values) else [])])
    return obj_array(
        [
            None
            if x is None
            else (json_text(x) if type(x) is str else orjson.dumps(x, option=_DUMPS_OPTS).decode())
            for x in uvals.tolist()
        ]
    )


def _fstring_literal(text: str) -> str:
    """``text`` as the literal part of a single-quoted Python f-string."""
    out = text.replace("\\", "\\\\").replace("'", "\\'").replace("{", "{{").replace("}", "}}")
    return out.replace("\n", "\\n").replace("\r", "\\r")


def text_builder(
    arg_paths: list[str], consts: dict[str, Any], items_path: str | None = None, tag: bool = False
) -> Callable[..., str]:
    """A compiled function joining JSON pieces into one compact, key-sorted object.

    Positional arguments: the JSON text of each ``arg_paths`` leaf, then the items array text (when
    ``items_path``), then the tag's JSON string (when ``tag``). Constants fill paths no argument covers.
    """
    tree: dict[str, Any] = {}
    consts_g: dict[str, str] = {}

    def insert(path: str, leaf: tuple[str, str]) -> None:
        node = tree
        parts = path.split(".")
        for seg in parts[:-1]:
            nxt = node.setdefault(seg, {})
            if not isinstance(nxt, dict):
                return
            node = nxt
        node.setdefault(parts[-1], leaf)

    for i, p in enumerate(arg_paths):
        insert(p, ("expr", f"a{i}"))
    args = [f"a{i}" for i in range(len(arg_paths))]
    if items_path:
        insert(items_path, ("expr", "it"))
        args.append("it")
    for p, val in consts.items():
        insert(p, ("lit", orjson.dumps(val, option=_DUMPS_OPTS).decode()))
    if tag:
        args.append("tg")
        old = tree.get("trackstar_tags")
        if old is None:
            tree["trackstar_tags"] = ("expr", '"[" + tg + "]"')
        elif old[0] == "lit":
            text = old[1]
            inner = text[1:-1] if text.startswith("[") else None
            consts_g["TAGS0"] = f"[{inner}," if inner else "["
            tree["trackstar_tags"] = ("expr", 'TAGS0 + tg + "]"')
        else:
            tree["trackstar_tags"] = (
                "expr",
                f'({old[1]}[:-1] + "," + tg + "]" if {old[1]}.startswith("[") else "[" + tg + "]")',
            )
    pieces: list[str] = []

    def lit(text: str) -> None:
        if pieces and pieces[-1].startswith("L:"):
            pieces[-1] += text
        else:
            pieces.append("L:" + text)

    def render(node: dict[str, Any]) -> None:
        lit("{")
        for i, key in enumerate(sorted(node)):
            lit(("," if i else "") + json_text(key) + ":")
            val = node[key]
            if isinstance(val, dict):
                render(val)
            elif val[0] == "lit":
                lit(val[1])
            else:
                pieces.append("E:" + val[1])
        lit("}")

    render(tree)
    # one f-string: literal JSON pieces escaped for a Python literal, argument pieces as {expressions}
    body = "".join(_fstring_literal(p[2:]) if p.startswith("L:") else "{" + p[2:] + "}" for p in pieces)
    code = f"lambda {', '.join(args)}: f'{body}'"
    return eval(code, consts_g)  # noqa: S307 - literal pieces are escaped, keys are JSON-encoded
