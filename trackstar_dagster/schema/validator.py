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

The work is split by job: ``rules.py`` (what each keyword means, the null rule, ``Problem``), ``nodes.py``
(schema -> ``Node`` tree), ``codegen.py`` (tree -> generated fast functions), ``explain.py`` (the problem
list); this module is the entry point and its one cache.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from typing import Any, Protocol, cast

from trackstar_dagster.base.nulls import is_null_like
from trackstar_dagster.schema.codegen import Codegen
from trackstar_dagster.schema.explain import explain
from trackstar_dagster.schema.nodes import NodeCompiler
from trackstar_dagster.schema.openapi import normalise_schema, operations
from trackstar_dagster.schema.rules import FORMAT_CHECKS, Problem, is_iso_date, is_iso_datetime, short

__all__ = [
    "FORMAT_CHECKS",
    "BodyValidator",
    "Problem",
    "body_validator",
    "body_validators",
    "compile_schema",
    "is_iso_date",
    "is_iso_datetime",
]


class BodyValidator(Protocol):
    """``validator(body) -> [Problem]`` (empty when valid); ``validator.is_valid(body) -> bool`` is the fast path."""

    action: str
    schema: dict[str, Any]

    def __call__(self, body: Any) -> list[Problem]: ...

    def is_valid(self, body: Any) -> bool: ...


#: (document content digest, action) -> validator: compiling costs milliseconds, so once per process
_CACHE: dict[tuple[str, str], BodyValidator] = {}
#: documents whose digest is remembered (least recently used dropped first): enough for hundreds of
#: connections' copies in one run, bounded for a process that lives through many runs
DIGEST_CACHE_SIZE = 1024
#: id(doc) -> (doc, digest): hashing a document costs more than validating a body, so it is remembered too
_DIGESTS: OrderedDict[int, tuple[Any, str]] = OrderedDict()


def document_digest(doc: dict[str, Any]) -> str:
    """The document's content hash: equal documents share validators (and field tables), even as different
    objects."""
    hit = _DIGESTS.get(id(doc))
    if hit is not None and hit[0] is doc:
        _DIGESTS.move_to_end(id(doc))
        return hit[1]
    text = json.dumps(doc, sort_keys=True, default=str, separators=(",", ":"))
    digest = hashlib.sha256(text.encode()).hexdigest()
    _DIGESTS[id(doc)] = (doc, digest)  # keeps doc alive, so its id cannot be reused while cached
    _DIGESTS.move_to_end(id(doc))
    while len(_DIGESTS) > DIGEST_CACHE_SIZE:
        _DIGESTS.popitem(last=False)
    return digest


def compile_schema(schema: dict[str, Any], action: str = "") -> BodyValidator:
    """Compile a (normalised) JSON Schema into a body validator. ``body_validator`` is the usual entry."""
    compiler = NodeCompiler(schema)
    root = compiler.compile(schema, action or None)
    gen = Codegen(compiler.nodes)
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
            out.append(Problem("", f"the body is null-like ({short(body)})"))
        else:
            try:
                explain(root, body, "", out)
            except Exception as exc:  # pragma: no cover - defensive
                out.append(Problem("", f"cannot validate body: {exc!r}"))
        if not out and not is_valid(body):
            out.append(Problem("", "the body does not match the schema"))
        return out

    # a plain function with attributes, not an object with __call__: one call less per body on the hot path
    for name, value in (
        ("is_valid", is_valid),
        ("action", action),
        ("schema", schema),
        ("source", gen.source),
    ):
        setattr(validate, name, value)
    return cast(BodyValidator, validate)


def body_validator(doc: dict[str, Any], action: str) -> BodyValidator:
    """The compiled validator for ``action``'s body in a write-info document (cached per document content).

    KeyError when the document has no such action.
    """
    key = (document_digest(doc), action)
    hit = _CACHE.get(key)
    if hit is None:
        hit = compile_schema(normalise_schema(doc, action), action)
        _CACHE[key] = hit
    return hit


def body_validators(doc: dict[str, Any]) -> dict[str, BodyValidator]:
    """A validator for every write action of the document."""
    return {op.action: body_validator(doc, op.action) for op in operations(doc)}
