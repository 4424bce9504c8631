"""Write-body validation compiled from a write-info document: the JSON schema plus Trackstar's null-like rule.

It runs on every body of a pipeline that must push hundreds of thousands of rows a second, so the schema is
compiled once into generated Python source (one function per object/array/composite schema node, scalar
checks inlined, like ``fastjsonschema``) that only answers "valid?". The detailed problem list is computed by
a slower interpreter over the same compiled tree, and only when the fast answer is "no".

Meaning (the reference is ``jsonschema.Draft202012Validator`` on ``normalise_schema(doc, action)`` with the
``FORMAT_CHECKS`` below, plus ``nulls.find_null_like``):

- nothing may be null-like at any depth (``None``, NaN, ``""``, ``" null "``, ``"N/A"``, empty nested
  objects and lists), even where the schema's type admits null; the body itself may be ``{}``;
- types as JSON Schema, except that ``2.0`` is not an ``integer`` (bodies are built in Python, where a float
  is a float); ``bool`` is neither integer nor number; only ``list`` is an array and only ``dict`` an object;
- ``required``, ``properties``, ``patternProperties``, ``additionalProperties``, ``min/maxProperties``,
  ``items``, ``min/maxItems``, ``uniqueItems``, ``min/maxLength``, ``pattern``, ``minimum``, ``maximum``,
  ``exclusiveMinimum``, ``exclusiveMaximum``, ``multipleOf``, ``enum``, ``const``, ``allOf``, ``anyOf``,
  ``oneOf``, ``not``, ``$ref``; ``format`` ``date-time`` and ``date`` as ISO 8601 (``fromisoformat`` after a
  trailing ``Z`` becomes ``+00:00``). Other keywords are ignored.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from typing import Any, NamedTuple, Protocol
from urllib.parse import unquote

from trackstar_dagster.base.nulls import NULL_LIKE_STRINGS, is_null_like
from trackstar_dagster.schema.openapi import normalise_schema, operations

__all__ = [
    "FORMAT_CHECKS",
    "BodyValidator",
    "Problem",
    "body_validator",
    "body_validators",
    "is_iso_date",
    "is_iso_datetime",
]


class Problem(NamedTuple):
    """One reason a body is refused: dotted field path (``line_items.0.sku``; ``""`` = the body) + message."""

    field: str
    message: str


class BodyValidator(Protocol):
    """``validator(body) -> [Problem]`` (empty when valid); ``validator.is_valid(body) -> bool`` is the fast path."""

    action: str
    schema: dict[str, Any]

    def __call__(self, body: Any) -> list[Problem]: ...

    def is_valid(self, body: Any) -> bool: ...


def is_iso_datetime(value: str) -> bool:
    """ISO 8601 date-time as Python reads it (a trailing ``Z`` means UTC)."""
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def is_iso_date(value: str) -> bool:
    """ISO 8601 calendar date as Python reads it."""
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


#: The ``format`` values that are enforced, and how (also used to configure the jsonschema reference).
FORMAT_CHECKS: dict[str, Callable[[str], bool]] = {"date-time": is_iso_datetime, "date": is_iso_date}

_MAX_NULL_LEN = max(len(s) for s in NULL_LIKE_STRINGS) + 1
_TYPE_NAMES = ("object", "array", "string", "integer", "number", "boolean")


# -- null-like helpers (mirror nulls.is_null_like / nulls.find_null_like exactly) ------------------------


def _nl_self(v: Any) -> bool:
    """Is this value itself null-like, counting empty objects and lists (not at the body root)."""
    c = v.__class__
    if c is str:
        t = v.strip()
        return len(t) < _MAX_NULL_LEN and t.casefold() in NULL_LIKE_STRINGS
    if c is int or c is bool:
        return False
    if c is dict or c is list:
        return not v
    if isinstance(v, dict | list):
        return not v
    return is_null_like(v)


def _nl_kids(v: Any) -> bool:
    """Is anything inside this value null-like (at any depth)."""
    if isinstance(v, dict):
        return any(_nl_self(x) or _nl_kids(x) for x in v.values())
    if isinstance(v, list):
        return any(_nl_self(x) or _nl_kids(x) for x in v)
    return False


def _nl_any(v: Any) -> bool:
    """The value or anything inside it is null-like."""
    return _nl_self(v) or _nl_kids(v)


def _null_paths(v: Any, path: str) -> list[str]:
    """Dotted paths of null-like values strictly inside ``v``."""
    found: list[str] = []
    if isinstance(v, dict):
        items: Any = v.items()
    elif isinstance(v, list):
        items = enumerate(v)
    else:
        return found
    for k, x in items:
        sub = _join(path, k)
        if _nl_self(x):
            found.append(sub)
        else:
            found += _null_paths(x, sub)
    return found


# -- JSON equality as jsonschema sees it (1 == 1.0, True != 1) ------------------------------------------


def _json_equal(one: Any, two: Any) -> bool:
    if one is two:
        return True
    if isinstance(one, str) or isinstance(two, str):
        return one == two
    if isinstance(one, Sequence) and isinstance(two, Sequence):
        return len(one) == len(two) and all(_json_equal(a, b) for a, b in zip(one, two, strict=True))
    if isinstance(one, Mapping) and isinstance(two, Mapping):
        return one.keys() == two.keys() and all(_json_equal(one[k], two[k]) for k in one)
    if isinstance(one, bool) or isinstance(two, bool):
        return isinstance(one, bool) and isinstance(two, bool) and one == two
    return one == two


def _in_enum(v: Any, values: list[Any]) -> bool:
    return any(_json_equal(v, e) for e in values)


def _unique(v: list[Any]) -> bool:
    return all(not _json_equal(v[i], v[j]) for i in range(len(v)) for j in range(i + 1, len(v)))


def _multiple_ok(v: Any, m: Any) -> bool:
    """``multipleOf`` exactly as jsonschema computes it."""
    if isinstance(m, float):
        quotient = v / m
        try:
            return int(quotient) == quotient
        except OverflowError:
            return False
    return not (v % m)


def _is_type(v: Any, t: str) -> bool:
    if t == "string":
        return isinstance(v, str)
    if t == "object":
        return isinstance(v, dict)
    if t == "array":
        return isinstance(v, list)
    if t == "boolean":
        return v.__class__ is bool
    if t == "integer":
        return isinstance(v, int) and v.__class__ is not bool
    if t == "number":
        return isinstance(v, numbers.Number) and v.__class__ is not bool
    return False


def _type_name(v: Any) -> str:
    if v.__class__ is bool:
        return "boolean"
    for t in ("string", "object", "array", "integer", "number"):
        if _is_type(v, t):
            return t
    return type(v).__name__


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _short(v: Any, limit: int = 60) -> str:
    text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- the compiled tree ----------------------------------------------------------------------------------

_NO_CONST = object()


class _Node:
    """One schema node, compiled: keywords pre-digested, children compiled (shared, cycles allowed)."""

    def __init__(self, nid: int, name: str | None = None) -> None:
        self.id = nid
        self.name = name
        self.any = False  # no constraint at all (``{}`` / ``true``): only the null-like rule applies
        self.never = False  # ``false``
        self.types: tuple[str, ...] | None = None
        self.enum: list[Any] | None = None
        self.const: Any = _NO_CONST
        self.props: dict[str, _Node] = {}
        self.required: list[str] = []
        self.pattern_props: list[tuple[re.Pattern[str], _Node]] = []
        self.additional: _Node | None = None  # None = anything (null-like rule only)
        self.additional_false = False
        self.min_props: int | None = None
        self.max_props: int | None = None
        self.items: _Node | None = None
        self.min_items: int | None = None
        self.max_items: int | None = None
        self.unique = False
        self.min_len: int | None = None
        self.max_len: int | None = None
        self.pattern: re.Pattern[str] | None = None
        self.format: str | None = None
        self.minimum: Any = None
        self.maximum: Any = None
        self.xminimum: Any = None
        self.xmaximum: Any = None
        self.multiple_of: Any = None
        self.all_of: list[_Node] = []
        self.any_of: list[_Node] = []
        self.one_of: list[_Node] = []
        self.not_: _Node | None = None
        self.fast: Callable[[Any], bool] = _never_compiled

    @property
    def label(self) -> str:
        return self.name or f"schema #{self.id}"

    def pure_composite(self) -> bool:
        """Only ``allOf``/``anyOf``/``oneOf``: whichever branch passes has covered the whole value."""
        return bool(self.all_of or self.any_of or self.one_of) and not (
            self.types or self.enum is not None or self.const is not _NO_CONST or self.props or self.required
            or self.pattern_props or self.additional is not None or self.additional_false
            or self.min_props is not None or self.max_props is not None or self.items is not None
            or self.min_items is not None or self.max_items is not None or self.unique
            or self.min_len is not None or self.max_len is not None or self.pattern is not None
            or self.format is not None or self.minimum is not None or self.maximum is not None
            or self.xminimum is not None or self.xmaximum is not None or self.multiple_of is not None)

    def simple_scalar(self) -> str | None:
        """The single scalar type when every check of this node can be inlined at its slot."""
        if (self.types is None or len(self.types) != 1 or self.any or self.never or self.all_of
                or self.any_of or self.one_of or self.not_ is not None or self.const is not _NO_CONST):
            return None
        t = self.types[0]
        if t not in ("string", "integer", "number", "boolean"):
            return None
        if self.enum is not None and not (t == "string" and all(isinstance(e, str) for e in self.enum)):
            return None
        if self.multiple_of is not None:
            return None
        return t


def _never_compiled(_: Any) -> bool:  # pragma: no cover - replaced at compile time
    raise RuntimeError("validator node used before compilation")


#: Keys with no bearing on validity (so ``{"$ref": X, "$defs": ...}`` is still a plain alias of X).
_ANNOTATIONS = frozenset({
    "$schema", "$defs", "definitions", "$id", "$comment", "$anchor", "title", "description", "example",
    "examples", "default", "deprecated", "readOnly", "writeOnly", "discriminator", "xml", "externalDocs",
    "nullable",
})


class _Compiler:
    """Normalised JSON Schema -> ``_Node`` tree -> generated Python source -> functions."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.nodes: list[_Node] = []
        self.memo: dict[int, _Node] = {}
        self.keep: list[Any] = []  # schema objects whose id() is memoised stay alive
        self.any_node = self._new("any")
        self.any_node.any = True
        self.never_node = self._new("nothing")
        self.never_node.never = True

    def _new(self, name: str | None) -> _Node:
        node = _Node(len(self.nodes), name)
        self.nodes.append(node)
        return node

    def lookup(self, ref: str) -> Any:
        if not ref.startswith("#"):
            raise ValueError(f"unsupported $ref {ref!r}: only refs inside the document are read")
        node: Any = self.root
        for part in [p for p in ref[1:].split("/") if p]:
            part = unquote(part).replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise KeyError(f"$ref to missing schema {ref!r}")
        return node

    def compile(self, schema: Any, name: str | None = None) -> _Node:
        seen: set[int] = set()
        while isinstance(schema, dict):  # pure aliases: {"$ref": X} and {"allOf": [X]}
            keys = set(schema) - _ANNOTATIONS
            if keys == {"$ref"} and isinstance(schema["$ref"], str):
                ref = schema["$ref"]
                nxt = self.lookup(ref)
                name = ref.rsplit("/", 1)[-1]
            elif keys == {"allOf"} and isinstance(schema["allOf"], list) and len(schema["allOf"]) == 1:
                nxt = schema["allOf"][0]
            else:
                break
            if id(schema) in seen:
                raise ValueError(f"$ref cycle with no schema in it at {name!r}")
            seen.add(id(schema))
            schema = nxt
        if schema is True or (isinstance(schema, dict) and not set(schema) - _ANNOTATIONS):
            return self.any_node
        if schema is False:
            return self.never_node
        if not isinstance(schema, dict):
            raise ValueError(f"not a schema: {schema!r}")
        if id(schema) in self.memo:
            return self.memo[id(schema)]
        title = schema.get("title")
        node = self._new(name or (title if isinstance(title, str) else None))
        self.memo[id(schema)] = node
        self.keep.append(schema)
        self._fill(node, schema)
        return node

    def _fill(self, n: _Node, s: dict[str, Any]) -> None:
        raw = s.get("type")
        if isinstance(raw, str):
            n.types = (raw,)
        elif isinstance(raw, list) and raw:
            n.types = tuple(t for t in raw if isinstance(t, str))
        if n.types is not None:
            n.types = tuple(t for t in n.types if t != "null") or None
        if isinstance(s.get("enum"), list):
            n.enum = list(s["enum"])
        if "const" in s:
            n.const = s["const"]
        props = s.get("properties")
        if isinstance(props, dict):
            n.props = {str(k): self.compile(v) for k, v in props.items()}
        if isinstance(s.get("required"), list):
            n.required = [r for r in s["required"] if isinstance(r, str)]
        pattern_props = s.get("patternProperties")
        if isinstance(pattern_props, dict):
            n.pattern_props = [(re.compile(k), self.compile(v)) for k, v in pattern_props.items()]
        if "additionalProperties" in s:
            extra = s["additionalProperties"]
            if extra is False:
                n.additional_false = True
            else:
                child = self.compile(extra)
                n.additional = None if child.any else child
                n.additional_false = child.never
        if "items" in s:
            child = self.compile(s["items"])
            n.items = None if child.any else child
        for key, attr in (("minProperties", "min_props"), ("maxProperties", "max_props"),
                          ("minItems", "min_items"), ("maxItems", "max_items"),
                          ("minLength", "min_len"), ("maxLength", "max_len")):
            if isinstance(s.get(key), int | float) and not isinstance(s.get(key), bool):
                setattr(n, attr, s[key])
        n.unique = s.get("uniqueItems") is True
        if isinstance(s.get("pattern"), str):
            n.pattern = re.compile(s["pattern"])
        if s.get("format") in FORMAT_CHECKS:
            n.format = s["format"]
        for key, attr in (("minimum", "minimum"), ("maximum", "maximum"), ("exclusiveMinimum", "xminimum"),
                          ("exclusiveMaximum", "xmaximum"), ("multipleOf", "multiple_of")):
            if isinstance(s.get(key), int | float) and not isinstance(s.get(key), bool):
                setattr(n, attr, s[key])
        for key, attr in (("allOf", "all_of"), ("anyOf", "any_of"), ("oneOf", "one_of")):
            if isinstance(s.get(key), list):
                setattr(n, attr, [self._branch(b) for b in s[key]])
        if "not" in s:
            n.not_ = self.compile(s["not"])
        if isinstance(s.get("$ref"), str):  # a $ref beside other keywords applies as well (2020-12)
            n.all_of.append(self.compile({"$ref": s["$ref"]}))

    def _branch(self, schema: Any) -> _Node:
        return self.compile(schema)


# -- code generation ------------------------------------------------------------------------------------

_TYPE_TESTS = {
    "string": "isinstance({v}, str)",
    "object": "isinstance({v}, dict)",
    "array": "isinstance({v}, list)",
    "boolean": "{v}.__class__ is bool",
    "integer": "(isinstance({v}, int) and {v}.__class__ is not bool)",
    "number": "(isinstance({v}, _Number) and {v}.__class__ is not bool)",
}


class _Codegen:
    def __init__(self, nodes: list[_Node]) -> None:
        self.nodes = nodes
        self.ns: dict[str, Any] = {
            "_M": object(),
            "_NL": NULL_LIKE_STRINGS,
            "_NLMAX": _MAX_NULL_LEN,
            "_Number": numbers.Number,
            "_nl_self": _nl_self,
            "_nl_any": _nl_any,
            "_nl_kids": _nl_kids,
            "_is_null_like": is_null_like,
            "_in_enum": _in_enum,
            "_json_equal": _json_equal,
            "_unique": _unique,
            "_multiple_ok": _multiple_ok,
        }
        self.lines: list[str] = []
        self.tmp = 0

    def const(self, prefix: str, value: Any) -> str:
        name = f"{prefix}{len(self.ns)}"
        self.ns[name] = value
        return name

    def var(self, base: str) -> str:
        self.tmp += 1
        return f"{base}{self.tmp}"

    def build(self) -> None:
        for node in self.nodes:
            self.function(node)
        source = "\n".join(self.lines) + "\n"
        exec(compile(source, "<trackstar body validator>", "exec"), self.ns)  # noqa: S102 - our own source
        for node in self.nodes:
            node.fast = self.ns[f"f{node.id}"]
        self.source = source

    # every generated function answers "does v satisfy this node", given that v itself is not null-like

    def function(self, n: _Node) -> None:
        out = [f"def f{n.id}(v):"]
        self.tmp = 0
        body = self.node_body(n, "v", 1)
        out += body
        out.append("    return True")
        self.lines += out + [""]

    def node_body(self, n: _Node, v: str, ind: int) -> list[str]:
        p = "    " * ind
        if n.never:
            return [f"{p}return False"]
        if n.any:
            return [f"{p}if _nl_kids({v}): return False"]
        lines: list[str] = []
        if n.pure_composite():  # a passing branch has checked every value inside v already
            return self.composites(n, v, ind)
        kinds = set(n.types) if n.types else set(_TYPE_NAMES)
        if n.types:
            test = " or ".join(_TYPE_TESTS.get(t, "False").format(v=v) for t in n.types)
            lines.append(f"{p}if not ({test}): return False")
        blocks = [
            ("object", f"isinstance({v}, dict)", self.object_block(n, v, ind + 1)),
            ("array", f"isinstance({v}, list)", self.array_block(n, v, ind + 1)),
            ("string", f"isinstance({v}, str)", self.string_block(n, v, ind + 1)),
        ]
        if "integer" in kinds or "number" in kinds:
            blocks.append(("number", f"({v}.__class__ is not bool and isinstance({v}, _Number))",
                           self.number_block(n, v, ind + 1)))
        live = [(k, cond, b) for k, cond, b in blocks if b and (k in kinds or k == "number")]
        single = n.types[0] if n.types and len(n.types) == 1 else None
        if single is not None and single in ("integer", "number"):
            single = "number"
        if single is not None and len(live) == 1 and live[0][0] == single:
            lines += [line[4:] for line in live[0][2]]  # the type test above already established the kind
        else:
            for i, (_, cond, block) in enumerate(live):
                lines.append(f"{p}{'if' if i == 0 else 'elif'} {cond}:")
                lines += block
        if n.enum is not None:
            if all(isinstance(e, str) for e in n.enum):
                e = self.const("E", frozenset(n.enum))
                lines.append(f"{p}if not (isinstance({v}, str) and {v} in {e}): return False")
            else:
                e = self.const("E", n.enum)
                lines.append(f"{p}if not _in_enum({v}, {e}): return False")
        if n.const is not _NO_CONST:
            c = self.const("C", n.const)
            lines.append(f"{p}if not _json_equal({v}, {c}): return False")
        return lines + self.composites(n, v, ind)

    def composites(self, n: _Node, v: str, ind: int) -> list[str]:
        p = "    " * ind
        lines: list[str] = []
        for b in n.all_of:
            lines.append(f"{p}if not f{b.id}({v}): return False")
        if n.any_of:
            lines.append(f"{p}if not ({' or '.join(f'f{b.id}({v})' for b in n.any_of)}): return False")
        if n.one_of:
            c = self.var("c")
            lines.append(f"{p}{c} = 0")
            for b in n.one_of:
                lines.append(f"{p}if f{b.id}({v}): {c} += 1")
            lines.append(f"{p}if {c} != 1: return False")
        if n.not_ is not None:
            lines.append(f"{p}if f{n.not_.id}({v}): return False")
        return lines

    def slot(self, child: _Node | None, x: str, ind: int) -> list[str]:
        """Check a value found inside an object or array: not null-like, then the child schema."""
        p = "    " * ind
        if child is None or child.any:
            return [f"{p}if _nl_any({x}): return False"]
        if child.never:
            return [f"{p}return False"]
        t = child.simple_scalar()
        lines: list[str] = []
        if t == "string":
            s = self.var("t")
            lines += [
                f"{p}if {x}.__class__ is not str and not isinstance({x}, str): return False",
                f"{p}{s} = {x}.strip()",
                f"{p}if len({s}) < _NLMAX and {s}.casefold() in _NL: return False",
            ]
            lines += [line[4:] for line in self.string_block(child, x, ind + 1)]
            if child.enum is not None:
                e = self.const("E", frozenset(child.enum))
                lines.append(f"{p}if {x} not in {e}: return False")
            return lines
        if t == "integer":
            lines.append(f"{p}if {x}.__class__ is not int and (not isinstance({x}, int) or "
                         f"{x}.__class__ is bool): return False")
            lines += [line[4:] for line in self.number_block(child, x, ind + 1)]
            return lines
        if t == "number":
            c = self.var("k")
            lines += [
                f"{p}{c} = {x}.__class__",
                f"{p}if {c} is float:",
                f"{p}    if {x} != {x}: return False",
                f"{p}elif {c} is not int:",
                f"{p}    if {c} is bool or not isinstance({x}, _Number) or _is_null_like({x}): return False",
            ]
            lines += [line[4:] for line in self.number_block(child, x, ind + 1)]
            return lines
        if t == "boolean":
            return [f"{p}if {x}.__class__ is not bool: return False"]
        if child.types == ("object",) or child.types == ("array",):
            return [f"{p}if not f{child.id}({x}) or not {x}: return False"]
        return [f"{p}if _nl_self({x}) or not f{child.id}({x}): return False"]

    def object_block(self, n: _Node, v: str, ind: int) -> list[str]:
        p = "    " * ind
        lines: list[str] = []
        if n.required:
            lines.append(f"{p}if not ({' and '.join(f'{r!r} in {v}' for r in n.required)}): return False")
        if n.min_props is not None:
            lines.append(f"{p}if len({v}) < {n.min_props!r}: return False")
        if n.max_props is not None:
            lines.append(f"{p}if len({v}) > {n.max_props!r}: return False")
        count = self.var("n")
        lines.append(f"{p}{count} = 0")
        for name, child in n.props.items():
            x = self.var("x")
            lines.append(f"{p}{x} = {v}.get({name!r}, _M)")
            lines.append(f"{p}if {x} is not _M:")
            lines.append(f"{p}    {count} += 1")
            lines += self.slot(child, x, ind + 1)
        lines.append(f"{p}if {count} != len({v}):")
        if n.additional_false and not n.pattern_props:
            lines.append(f"{p}    return False")
            return lines
        k, x = self.var("k"), self.var("x")
        declared = self.const("P", frozenset(n.props))
        lines.append(f"{p}    for {k}, {x} in {v}.items():")
        lines.append(f"{p}        if {k} in {declared}: continue")
        q = p + "        "
        if n.pattern_props:
            m = self.var("m")
            lines.append(f"{q}{m} = False")
            for rx, child in n.pattern_props:
                r = self.const("R", rx.search)
                lines.append(f"{q}if {r}({k}) is not None:")
                lines.append(f"{q}    {m} = True")
                lines += self.slot(child, x, ind + 3)
            lines.append(f"{q}if not {m}:")
            lines += self.extra(n, x, ind + 3)
        else:
            lines += self.extra(n, x, ind + 2)
        return lines

    def extra(self, n: _Node, x: str, ind: int) -> list[str]:
        if n.additional_false:
            return ["    " * ind + "return False"]
        return self.slot(n.additional, x, ind)

    def array_block(self, n: _Node, v: str, ind: int) -> list[str]:
        p = "    " * ind
        lines: list[str] = []
        if n.min_items is not None:
            lines.append(f"{p}if len({v}) < {n.min_items!r}: return False")
        if n.max_items is not None:
            lines.append(f"{p}if len({v}) > {n.max_items!r}: return False")
        x = self.var("x")
        lines.append(f"{p}for {x} in {v}:")
        lines += self.slot(n.items, x, ind + 1)
        if n.unique:
            lines.append(f"{p}if not _unique({v}): return False")
        return lines

    def string_block(self, n: _Node, v: str, ind: int) -> list[str]:
        p = "    " * ind
        lines: list[str] = []
        if n.min_len is not None:
            lines.append(f"{p}if len({v}) < {n.min_len!r}: return False")
        if n.max_len is not None:
            lines.append(f"{p}if len({v}) > {n.max_len!r}: return False")
        if n.pattern is not None:
            r = self.const("R", n.pattern.search)
            lines.append(f"{p}if {r}({v}) is None: return False")
        if n.format is not None:
            f = self.const("F", FORMAT_CHECKS[n.format])
            lines.append(f"{p}if not {f}({v}): return False")
        return lines

    def number_block(self, n: _Node, v: str, ind: int) -> list[str]:
        p = "    " * ind
        lines: list[str] = []
        for attr, op in (("minimum", "<"), ("maximum", ">"), ("xminimum", "<="), ("xmaximum", ">=")):
            bound = getattr(n, attr)
            if bound is not None:
                lines.append(f"{p}if {v} {op} {bound!r}: return False")
        if n.multiple_of is not None:
            lines.append(f"{p}if not _multiple_ok({v}, {n.multiple_of!r}): return False")
        return lines


# -- the detailed (slow) path ---------------------------------------------------------------------------


def _explain_slot(n: _Node | None, x: Any, path: str, out: list[Problem]) -> None:
    if _nl_self(x):
        out.append(Problem(path, f"null-like value {_short(x)} is not allowed: leave the field out"))
        return
    if n is None or n.any:
        out += [Problem(p, "null-like value is not allowed: leave the field out") for p in _null_paths(x, path)]
        return
    if not n.fast(x):  # valid subtrees are skipped at compiled speed
        _explain(n, x, path, out)


def _explain(n: _Node, v: Any, path: str, out: list[Problem]) -> None:
    """Append every problem of ``v`` (already known not null-like itself) against node ``n``."""
    if n.never:
        out.append(Problem(path, "no value is allowed here"))
        return
    if n.any:
        out += [Problem(p, "null-like value is not allowed: leave the field out") for p in _null_paths(v, path)]
        return
    if n.types and not any(_is_type(v, t) for t in n.types):
        out.append(Problem(path, f"expected {' or '.join(n.types)}, got {_type_name(v)} {_short(v)}"))
        return
    if isinstance(v, dict):
        _explain_object(n, v, path, out)
    elif isinstance(v, list):
        if n.min_items is not None and len(v) < n.min_items:
            out.append(Problem(path, f"needs at least {n.min_items} items, has {len(v)}"))
        if n.max_items is not None and len(v) > n.max_items:
            out.append(Problem(path, f"allows at most {n.max_items} items, has {len(v)}"))
        for i, x in enumerate(v):
            _explain_slot(n.items, x, _join(path, i), out)
        if n.unique and not _unique(v):
            out.append(Problem(path, "items must be unique"))
    elif isinstance(v, str):
        if n.min_len is not None and len(v) < n.min_len:
            out.append(Problem(path, f"shorter than {n.min_len} characters"))
        if n.max_len is not None and len(v) > n.max_len:
            out.append(Problem(path, f"longer than {n.max_len} characters ({len(v)})"))
        if n.pattern is not None and n.pattern.search(v) is None:
            out.append(Problem(path, f"{_short(v)} does not match pattern {n.pattern.pattern!r}"))
        if n.format is not None and not FORMAT_CHECKS[n.format](v):
            out.append(Problem(path, f"{_short(v)} is not an ISO 8601 {n.format}"))
    elif isinstance(v, numbers.Number) and v.__class__ is not bool:
        for attr, fails, word in (("minimum", lambda a, b: a < b, "less than"),
                                  ("maximum", lambda a, b: a > b, "greater than"),
                                  ("xminimum", lambda a, b: a <= b, "not greater than"),
                                  ("xmaximum", lambda a, b: a >= b, "not less than")):
            bound = getattr(n, attr)
            if bound is not None and fails(v, bound):
                out.append(Problem(path, f"{v!r} is {word} {bound!r}"))
        if n.multiple_of is not None and not _multiple_ok(v, n.multiple_of):
            out.append(Problem(path, f"{v!r} is not a multiple of {n.multiple_of!r}"))
    if n.enum is not None and not _in_enum(v, n.enum):
        shown = ", ".join(_short(e, 30) for e in n.enum[:10]) + (", ..." if len(n.enum) > 10 else "")
        out.append(Problem(path, f"{_short(v)} is not one of [{shown}]"))
    if n.const is not _NO_CONST and not _json_equal(v, n.const):
        out.append(Problem(path, f"must be {_short(n.const)}"))
    for b in n.all_of:
        if not b.fast(v):
            _explain(b, v, path, out)
    if n.any_of and not any(b.fast(v) for b in n.any_of):
        _explain_branches(n.any_of, v, path, out, "any")
    if n.one_of:
        passing = [b for b in n.one_of if b.fast(v)]
        if not passing:
            _explain_branches(n.one_of, v, path, out, "exactly one")
        elif len(passing) > 1:
            out.append(Problem(path, "matches more than one of "
                               f"{', '.join(b.label for b in passing)}: give the fields of only one"))
    if n.not_ is not None and n.not_.fast(v):
        out.append(Problem(path, f"must not match {n.not_.label}"))


def _explain_branches(branches: list[_Node], v: Any, path: str, out: list[Problem], how: str) -> None:
    labels = ", ".join(b.label for b in branches)
    best: list[Problem] | None = None
    best_label = ""
    for b in branches:
        found: list[Problem] = []
        _explain(b, v, path, found)
        if best is None or len(found) < len(best):
            best, best_label = found, b.label
    out.append(Problem(path, f"must match {how} of: {labels}; it matches none"))
    out += [Problem(p.field, f"({best_label}) {p.message}") for p in best or []]


def _explain_object(n: _Node, v: dict[str, Any], path: str, out: list[Problem]) -> None:
    for r in n.required:
        if r not in v:
            out.append(Problem(_join(path, r), "required field is missing"))
    if n.min_props is not None and len(v) < n.min_props:
        out.append(Problem(path, f"needs at least {n.min_props} fields"))
    if n.max_props is not None and len(v) > n.max_props:
        out.append(Problem(path, f"allows at most {n.max_props} fields"))
    for k, x in v.items():
        sub = _join(path, k)
        if k in n.props:
            _explain_slot(n.props[k], x, sub, out)
            continue
        matched = False
        for rx, child in n.pattern_props:
            if rx.search(k) is not None:
                matched = True
                _explain_slot(child, x, sub, out)
        if matched:
            continue
        if n.additional_false:
            out.append(Problem(sub, "field is not accepted here (not in the integration's schema)"))
        else:
            _explain_slot(n.additional, x, sub, out)


# -- public API -----------------------------------------------------------------------------------------

_CACHE: dict[tuple[str, str], BodyValidator] = {}
_DIGESTS: dict[int, tuple[Any, str]] = {}


def _digest(doc: dict[str, Any]) -> str:
    hit = _DIGESTS.get(id(doc))
    if hit is not None and hit[0] is doc:
        return hit[1]
    text = json.dumps(doc, sort_keys=True, default=str, separators=(",", ":"))
    digest = hashlib.sha256(text.encode()).hexdigest()
    if len(_DIGESTS) > 256:
        _DIGESTS.clear()
    _DIGESTS[id(doc)] = (doc, digest)  # keeps doc alive, so its id cannot be reused while cached
    return digest


def compile_schema(schema: dict[str, Any], action: str = "") -> BodyValidator:
    """Compile a (normalised) JSON Schema into a body validator. ``body_validator`` is the usual entry."""
    compiler = _Compiler(schema)
    root = compiler.compile(schema, action or None)
    gen = _Codegen(compiler.nodes)
    gen.build()
    fast_root = root.fast

    def is_valid(body: Any) -> bool:
        """Fast path: True when the body is valid."""
        try:
            if body.__class__ is dict:
                return fast_root(body)
            return not is_null_like(body) and fast_root(body)
        except Exception:  # e.g. an exotic value that cannot be compared: let the slow path say why
            return False

    def validate(body: Any) -> list[Problem]:
        """Problems of the body (field path + message); empty when it may be sent."""
        try:
            if body.__class__ is dict and fast_root(body):
                return []
        except Exception:
            pass
        out: list[Problem] = []
        if is_null_like(body):
            out.append(Problem("", f"the body is null-like ({_short(body)})"))
        else:
            try:
                _explain(root, body, "", out)
            except Exception as exc:  # pragma: no cover - defensive
                out.append(Problem("", f"cannot validate body: {exc!r}"))
        if not out and not is_valid(body):
            out.append(Problem("", "the body does not match the schema"))
        return out

    validate.is_valid = is_valid  # type: ignore[attr-defined]
    validate.action = action  # type: ignore[attr-defined]
    validate.schema = schema  # type: ignore[attr-defined]
    validate.source = gen.source  # type: ignore[attr-defined]
    return validate  # type: ignore[return-value]


def body_validator(doc: dict[str, Any], action: str) -> BodyValidator:
    """The compiled validator for ``action``'s body in a write-info document (cached per document content).

    KeyError when the document has no such action.
    """
    key = (_digest(doc), action)
    hit = _CACHE.get(key)
    if hit is None:
        hit = compile_schema(normalise_schema(doc, action), action)
        _CACHE[key] = hit
    return hit


def body_validators(doc: dict[str, Any]) -> dict[str, BodyValidator]:
    """A validator for every write action of the document."""
    return {op.action: body_validator(doc, op.action) for op in operations(doc)}
