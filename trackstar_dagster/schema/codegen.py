"""The fast path: a ``Node`` tree turned into generated Python source, compiled once, answering "valid?".

Bodies are validated at pipeline speed (hundreds of thousands a second), which an interpreter walking the
tree cannot reach, so, like ``fastjsonschema``, each object/array/composite node becomes one function
``f<id>(v) -> bool`` with its scalar children's checks inlined at their slots, class tests (``v.__class__
is str``) before ``isinstance`` and constants (enum sets, compiled patterns, format checks) bound in the
function's namespace. Each function assumes ``v`` itself is not null-like; the slot that finds a value
inside an object or array checks that first. The keywords' meaning comes from ``rules.py``; this module
only decides how to say it fast, so ``explain.py`` and the generated code cannot disagree on what is valid.
"""

from __future__ import annotations

import numbers
from typing import Any

from trackstar_dagster.base.nulls import NULL_LIKE_STRINGS, is_null_like
from trackstar_dagster.schema.nodes import NO_CONST, Node
from trackstar_dagster.schema.rules import (
    FORMAT_CHECKS,
    MAX_NULL_LEN,
    TYPE_NAMES,
    in_enum,
    is_unique,
    json_equal,
    multiple_ok,
    nl_any,
    nl_kids,
    nl_self,
)

_TYPE_TESTS = {
    "string": "isinstance({v}, str)",
    "object": "isinstance({v}, dict)",
    "array": "isinstance({v}, list)",
    "boolean": "{v}.__class__ is bool",
    "integer": "(isinstance({v}, int) and {v}.__class__ is not bool)",
    "number": "(isinstance({v}, _Number) and {v}.__class__ is not bool)",
}


class Codegen:
    """Writes one function per node into ``source``; ``build`` compiles it and sets every ``node.fast``."""

    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = nodes
        self.ns: dict[str, Any] = {
            "_M": object(),
            "_NL": NULL_LIKE_STRINGS,
            "_NLMAX": MAX_NULL_LEN,
            "_Number": numbers.Number,
            "_nl_self": nl_self,
            "_nl_any": nl_any,
            "_nl_kids": nl_kids,
            "_is_null_like": is_null_like,
            "_in_enum": in_enum,
            "_json_equal": json_equal,
            "_unique": is_unique,
            "_multiple_ok": multiple_ok,
        }
        self.lines: list[str] = []
        self.tmp = 0
        self.source = ""  # the generated module, kept for reading (``validator.source``)

    def const(self, prefix: str, value: Any) -> str:
        """A name in the generated code's namespace bound to ``value`` (sets, patterns, checks)."""
        name = f"{prefix}{len(self.ns)}"
        self.ns[name] = value
        return name

    def var(self, base: str) -> str:
        """A fresh local variable name within the function being written."""
        self.tmp += 1
        return f"{base}{self.tmp}"

    def build(self) -> None:
        """Write every node's function, compile the source once, and hand each node its function."""
        for node in self.nodes:
            self.function(node)
        source = "\n".join(self.lines) + "\n"
        exec(compile(source, "<trackstar body validator>", "exec"), self.ns)  # noqa: S102 - our own source
        for node in self.nodes:
            node.fast = self.ns[f"f{node.id}"]
        self.source = source

    # every generated function answers "does v satisfy this node", given that v itself is not null-like

    def function(self, n: Node) -> None:
        """``def f<id>(v)``: does ``v`` (itself not null-like) satisfy node ``n``."""
        out = [f"def f{n.id}(v):"]
        self.tmp = 0
        body = self.node_body(n, "v", 1)
        out += body
        out.append("    return True")
        self.lines += out + [""]

    def node_body(self, n: Node, v: str, ind: int) -> list[str]:
        """Node ``n``'s checks on ``v``: type, the blocks of the kinds it may be, enum, const, composites."""
        p = "    " * ind
        if n.never:
            return [f"{p}return False"]
        if n.any:
            return [f"{p}if _nl_kids({v}): return False"]
        lines: list[str] = []
        if n.pure_composite():  # a passing branch has checked every value inside v already
            return self.composites(n, v, ind)
        kinds = set(n.types) if n.types else set(TYPE_NAMES)
        if n.types:
            test = " or ".join(_TYPE_TESTS.get(t, "False").format(v=v) for t in n.types)
            lines.append(f"{p}if not ({test}): return False")
        blocks = [
            ("object", f"isinstance({v}, dict)", self.object_block(n, v, ind + 1)),
            ("array", f"isinstance({v}, list)", self.array_block(n, v, ind + 1)),
            ("string", f"isinstance({v}, str)", self.string_block(n, v, ind + 1)),
        ]
        if "integer" in kinds or "number" in kinds:
            blocks.append(
                (
                    "number",
                    f"({v}.__class__ is not bool and isinstance({v}, _Number))",
                    self.number_block(n, v, ind + 1),
                )
            )
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
        if n.const is not NO_CONST:
            c = self.const("C", n.const)
            lines.append(f"{p}if not _json_equal({v}, {c}): return False")
        return lines + self.composites(n, v, ind)

    def composites(self, n: Node, v: str, ind: int) -> list[str]:
        """``allOf``/``anyOf``/``oneOf``/``not`` as calls to the branches' functions."""
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

    def slot(self, child: Node | None, x: str, ind: int) -> list[str]:
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
            lines.append(
                f"{p}if {x}.__class__ is not int and (not isinstance({x}, int) or "
                f"{x}.__class__ is bool): return False"
            )
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

    def object_block(self, n: Node, v: str, ind: int) -> list[str]:
        """``required``, property counts, declared, pattern and additional properties of a dict."""
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

    def extra(self, n: Node, x: str, ind: int) -> list[str]:
        """A property neither declared nor matched by a pattern: refused, or checked as additional."""
        if n.additional_false:
            return ["    " * ind + "return False"]
        return self.slot(n.additional, x, ind)

    def array_block(self, n: Node, v: str, ind: int) -> list[str]:
        """Item counts, every item in its slot, ``uniqueItems``."""
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

    def string_block(self, n: Node, v: str, ind: int) -> list[str]:
        """Length, ``pattern`` and ``format`` of a str."""
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

    def number_block(self, n: Node, v: str, ind: int) -> list[str]:
        """Bounds and ``multipleOf`` of a number."""
        p = "    " * ind
        lines: list[str] = []
        for attr, op in (("minimum", "<"), ("maximum", ">"), ("xminimum", "<="), ("xmaximum", ">=")):
            bound = getattr(n, attr)
            if bound is not None:
                lines.append(f"{p}if {v} {op} {bound!r}: return False")
        if n.multiple_of is not None:
            lines.append(f"{p}if not _multiple_ok({v}, {n.multiple_of!r}): return False")
        return lines
