"""A normalised JSON Schema read once into a tree of ``Node``s: the keywords digested, ``$ref``s followed.

Both validator paths walk this tree rather than the raw schema: ``codegen.py`` turns it into Python source
and ``explain.py`` interprets it for the problem list. Building it here, once, is what makes the two agree:
pure aliases (``{"$ref": X}``, ``{"allOf": [X]}``) collapse onto X, the same schema object becomes one shared
node (so recursive ``$ref`` cycles are finite), ``type: null`` is dropped (the null-like rule forbids
nulls anyway) and keywords this engine does not enforce are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from trackstar_dagster.schema.rules import FORMAT_CHECKS

#: ``Node.const`` when the schema has no ``const`` (``None`` is a possible constant).
NO_CONST = object()


class Node:
    """One schema node, compiled: keywords pre-digested, children compiled (shared, cycles allowed)."""

    def __init__(self, nid: int, name: str | None = None) -> None:
        self.id = nid
        self.name = name
        self.any = False  # no constraint at all (``{}`` / ``true``): only the null-like rule applies
        self.never = False  # ``false``
        self.types: tuple[str, ...] | None = None
        self.enum: list[Any] | None = None
        self.const: Any = NO_CONST
        self.props: dict[str, Node] = {}
        self.required: list[str] = []
        self.pattern_props: list[tuple[re.Pattern[str], Node]] = []
        self.additional: Node | None = None  # None = anything (null-like rule only)
        self.additional_false = False
        self.min_props: int | None = None
        self.max_props: int | None = None
        self.items: Node | None = None
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
        self.all_of: list[Node] = []
        self.any_of: list[Node] = []
        self.one_of: list[Node] = []
        self.not_: Node | None = None
        self.fast: Callable[[Any], bool] = _never_compiled

    @property
    def label(self) -> str:
        """How messages name this node: its ``$ref`` name or title, else its number."""
        return self.name or f"schema #{self.id}"

    def pure_composite(self) -> bool:
        """Only ``allOf``/``anyOf``/``oneOf``: whichever branch passes has covered the whole value."""
        return bool(self.all_of or self.any_of or self.one_of) and not (
            self.types
            or self.enum is not None
            or self.const is not NO_CONST
            or self.props
            or self.required
            or self.pattern_props
            or self.additional is not None
            or self.additional_false
            or self.min_props is not None
            or self.max_props is not None
            or self.items is not None
            or self.min_items is not None
            or self.max_items is not None
            or self.unique
            or self.min_len is not None
            or self.max_len is not None
            or self.pattern is not None
            or self.format is not None
            or self.minimum is not None
            or self.maximum is not None
            or self.xminimum is not None
            or self.xmaximum is not None
            or self.multiple_of is not None
        )

    def simple_scalar(self) -> str | None:
        """The single scalar type when every check of this node can be inlined at its slot."""
        if (
            self.types is None
            or len(self.types) != 1
            or self.any
            or self.never
            or self.all_of
            or self.any_of
            or self.one_of
            or self.not_ is not None
            or self.const is not NO_CONST
        ):
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
ANNOTATIONS = frozenset(
    {
        "$schema",
        "$defs",
        "definitions",
        "$id",
        "$comment",
        "$anchor",
        "title",
        "description",
        "example",
        "examples",
        "default",
        "deprecated",
        "readOnly",
        "writeOnly",
        "discriminator",
        "xml",
        "externalDocs",
        "nullable",
    }
)


class NodeCompiler:
    """Normalised JSON Schema -> ``Node`` tree (``nodes`` in creation order; ``codegen.Codegen`` compiles them)."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.nodes: list[Node] = []
        self.memo: dict[int, Node] = {}
        self.keep: list[Any] = []  # schema objects whose id() is memoised stay alive
        self.any_node = self._new("any")
        self.any_node.any = True
        self.never_node = self._new("nothing")
        self.never_node.never = True

    def _new(self, name: str | None) -> Node:
        node = Node(len(self.nodes), name)
        self.nodes.append(node)
        return node

    def lookup(self, ref: str) -> Any:
        """The schema a local ``$ref`` (``#/$defs/X``, JSON Pointer escapes) points at."""
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

    def compile(self, schema: Any, name: str | None = None) -> Node:
        """The node of ``schema`` (the same node for the same schema object, so cycles end)."""
        seen: set[int] = set()
        while isinstance(schema, dict):  # pure aliases: {"$ref": X} and {"allOf": [X]}
            keys = set(schema) - ANNOTATIONS
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
        if schema is True or (isinstance(schema, dict) and not set(schema) - ANNOTATIONS):
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

    def _fill(self, n: Node, s: dict[str, Any]) -> None:
        """Digest the keywords this engine enforces; anything else in ``s`` is ignored."""
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
        for key, attr in (
            ("minProperties", "min_props"),
            ("maxProperties", "max_props"),
            ("minItems", "min_items"),
            ("maxItems", "max_items"),
            ("minLength", "min_len"),
            ("maxLength", "max_len"),
        ):
            if isinstance(s.get(key), int | float) and not isinstance(s.get(key), bool):
                setattr(n, attr, s[key])
        n.unique = s.get("uniqueItems") is True
        if isinstance(s.get("pattern"), str):
            n.pattern = re.compile(s["pattern"])
        if s.get("format") in FORMAT_CHECKS:
            n.format = s["format"]
        for key, attr in (
            ("minimum", "minimum"),
            ("maximum", "maximum"),
            ("exclusiveMinimum", "xminimum"),
            ("exclusiveMaximum", "xmaximum"),
            ("multipleOf", "multiple_of"),
        ):
            if isinstance(s.get(key), int | float) and not isinstance(s.get(key), bool):
                setattr(n, attr, s[key])
        for key, attr in (("allOf", "all_of"), ("anyOf", "any_of"), ("oneOf", "one_of")):
            if isinstance(s.get(key), list):
                setattr(n, attr, [self._branch(b) for b in s[key]])
        if "not" in s:
            n.not_ = self.compile(s["not"])
        if isinstance(s.get("$ref"), str):  # a $ref beside other keywords applies as well (2020-12)
            n.all_of.append(self.compile({"$ref": s["$ref"]}))

    def _branch(self, schema: Any) -> Node:
        return self.compile(schema)
