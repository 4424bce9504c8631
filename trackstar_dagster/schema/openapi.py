"""Reading write-info documents: operations, actions, ``$ref`` resolution, and the normalised JSON Schema.

A write-info document is OpenAPI 3.1: ``paths`` -> method -> ``requestBody`` -> ``application/json`` ->
``schema`` (usually a ``$ref`` into ``components.schemas``). The "normalised" schema is the meaning the API
gives it, written as plain JSON Schema (2020-12) so a reference validator (``jsonschema``) can judge bodies:

- ``"null"`` is taken out of type arrays (Trackstar refuses null-like values whatever the type says);
- an object with empty ``properties``, ``additionalProperties: false`` and ``oneOf`` (``channel_object``,
  ``supplier_object``) means "one of the branches' property sets": the empty ``properties`` and the
  ``additionalProperties: false`` beside the ``oneOf`` are dropped so the branches govern;
- placeholder enums ("N/A - Connect an account to see options") are not enforced.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

REF_PREFIX = "#/components/schemas/"
PLACEHOLDER_MARKER = "connect an account"
WRITE_METHODS = ("post", "put", "patch")


@dataclass(frozen=True)
class Operation:
    """One write operation of a write-info document."""

    action: str  # create_order, update_order, create_return, ...
    method: str  # POST, PUT, PATCH
    path: str  # /wms/orders, /wms/orders/{order_id}
    schema: dict[str, Any]  # the request body schema node as written (often a {"$ref": ...})


def singular(resource: str) -> str:
    """``inbound-shipments`` -> ``inbound_shipment``; ``orders`` -> ``order``."""
    name = resource.replace("-", "_")
    if name.endswith("ies"):
        return name[:-3] + "y"
    if name.endswith("s"):
        return name[:-1]
    return name


def action_for(method: str, path: str) -> str:
    """The Trackstar action name of a write: ``POST /wms/orders`` -> ``create_order``.

    ``PUT /wms/orders/{order_id}`` -> ``update_order``; ``PUT /wms/orders/{order_id}/cancel`` ->
    ``cancel_order``; ``PUT /wms/inbound-shipments/{id}/receive`` -> ``receive_inbound_shipment``.
    """
    segments = [s for s in path.strip("/").split("/") if s]
    if segments and segments[0] in ("wms", "cart", "carrier", "freight", "erp"):
        segments = segments[1:]
    if not segments:
        return f"{method.lower()}_root"
    resource = singular(segments[0])
    rest = segments[1:]
    method = method.upper()
    if not rest and method == "POST":
        return f"create_{resource}"
    if len(rest) == 1 and rest[0].startswith("{") and method in ("PUT", "PATCH"):
        return f"update_{resource}"
    verb = next((s for s in reversed(rest) if not s.startswith("{")), None)
    if verb:
        return f"{verb.replace('-', '_')}_{resource}"
    return f"{method.lower()}_{resource}"


def operations(doc: dict[str, Any]) -> list[Operation]:
    """Every write operation that has a JSON request body, in document order."""
    ops: list[Operation] = []
    for path, item in (doc.get("paths") or {}).items():
        if not isinstance(item, dict):
            continue
        for method, op in item.items():
            if method.lower() not in WRITE_METHODS or not isinstance(op, dict):
                continue
            content = (op.get("requestBody") or {}).get("content") or {}
            media = content.get("application/json") or next(iter(content.values()), None)
            if not isinstance(media, dict) or not isinstance(media.get("schema"), dict):
                continue
            ops.append(Operation(action_for(method, path), method.upper(), path, media["schema"]))
    return ops


def find_operation(doc: dict[str, Any], action: str) -> Operation:
    """The operation for ``action``; KeyError naming the actions the document does have."""
    for op in operations(doc):
        if op.action == action:
            return op
    available = sorted({op.action for op in operations(doc)})
    raise KeyError(f"write-info has no {action!r} operation; it has {available}")


def ref_name(ref: str) -> str:
    """``#/components/schemas/Foo`` -> ``Foo`` (JSON-pointer escapes undone)."""
    if not ref.startswith(REF_PREFIX):
        raise ValueError(f"unsupported $ref {ref!r}: only {REF_PREFIX}... is read")
    return ref[len(REF_PREFIX) :].replace("~1", "/").replace("~0", "~")


def resolve(doc: dict[str, Any], node: Any) -> tuple[str | None, Any]:
    """Follow a chain of ``$ref`` to a schema node; returns (last ref name, node). Cycles raise ValueError."""
    seen: list[str] = []
    name = None
    while isinstance(node, dict) and "$ref" in node:
        name = ref_name(node["$ref"])
        if name in seen:
            raise ValueError(f"$ref cycle: {' -> '.join([*seen, name])}")
        seen.append(name)
        schemas = (doc.get("components") or {}).get("schemas") or {}
        if name not in schemas:
            raise KeyError(f"$ref to missing schema {name!r}")
        node = schemas[name]
    return name, node


def json_types(node: dict[str, Any]) -> tuple[list[str], bool]:
    """(types without "null", nullable) from ``type`` (string or 3.1 array) and 3.0 ``nullable``."""
    raw = node.get("type")
    if raw is None:
        types: list[str] = []
    elif isinstance(raw, list):
        types = [t for t in raw if isinstance(t, str)]
    else:
        types = [raw] if isinstance(raw, str) else []
    nullable = "null" in types or bool(node.get("nullable"))
    return [t for t in types if t != "null"], nullable


def is_placeholder_enum(values: Any) -> bool:
    """True for the "connect an account to see options" enums Trackstar returns without an access token."""
    if not isinstance(values, list) or not values:
        return False
    return any(isinstance(v, str) and PLACEHOLDER_MARKER in v.casefold() for v in values)


def is_one_of_pattern(node: dict[str, Any]) -> bool:
    """Empty ``properties`` + ``additionalProperties: false`` + ``oneOf``: one of the branches' property sets.

    ``properties`` left out altogether reads the same (taken literally, no body could ever match).
    """
    return (
        isinstance(node, dict)
        and node.get("properties", {}) == {}
        and node.get("additionalProperties") is False
        and isinstance(node.get("oneOf"), list)
    )


_REF_RE = re.compile(re.escape(REF_PREFIX))


def _normalise_node(node: Any) -> Any:
    if isinstance(node, list):
        return [_normalise_node(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    one_of_pattern = is_one_of_pattern(node)
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str):
            out[key] = "#/$defs/" + value[len(REF_PREFIX) :] if value.startswith(REF_PREFIX) else value
        elif key == "type":
            types, _ = json_types(node)
            if types:
                out["type"] = types[0] if len(types) == 1 else types
        elif key == "nullable":
            continue
        elif key == "enum":
            if is_placeholder_enum(value):
                continue
            out["enum"] = [v for v in value if v is not None] if isinstance(value, list) else value
        elif key in ("properties", "patternProperties", "$defs", "definitions"):
            if key == "properties" and one_of_pattern:
                continue
            out[key] = {k: _normalise_node(v) for k, v in value.items()} if isinstance(value, dict) else value
        elif key == "additionalProperties" and one_of_pattern:
            continue
        elif key in (
            "example",
            "examples",
            "description",
            "title",
            "default",
            "discriminator",
            "xml",
            "externalDocs",
            "readOnly",
            "writeOnly",
            "deprecated",
        ):
            continue  # annotations: no bearing on validity
        else:
            out[key] = _normalise_node(value)
    return out


def normalise_schema(doc: dict[str, Any], action: str) -> dict[str, Any]:
    """A self-contained JSON Schema (2020-12) for the body of ``action``, normalised as the module docstring says.

    Component schemas become ``$defs`` so repeated and cyclic refs stay refs.
    """
    op = find_operation(doc, action)
    schemas = (doc.get("components") or {}).get("schemas") or {}
    root = _normalise_node(copy.deepcopy(op.schema))
    root["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    root["$defs"] = {name: _normalise_node(s) for name, s in schemas.items()}
    return root
