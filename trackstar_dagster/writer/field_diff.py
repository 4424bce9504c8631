"""Which fields a body would change in the record Trackstar holds: a pure diff, no HTTP, no Dagster.

Only the fields the body sets are compared (Trackstar returns many more: ids, statuses, its own dates). Nested
objects are walked by path (``ship_to_address.city``); lists of objects (line items) are matched by ``sku``,
else ``product_id``, else position, with added and removed items; lists of plain values by value (tags in
any order). Values are compared in the forms Trackstar may answer with, so an unchanged field is not reported:
``1`` and ``1.0`` and ``"1.00"`` are one number, ISO dates and datetimes are one instant (``Z`` or
``+00:00``, with or without microseconds, a date alone is its midnight UTC), a missing field is ``null``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

#: fields that identify a list's object items, in order of preference (else items are matched by position)
ITEM_KEYS = ("sku", "product_id")


@dataclass(frozen=True)
class FieldChange:
    """One field a write would change. ``field`` is the concrete path (``line_items[sku=A].quantity``),
    ``name`` the field whatever the item (``line_items[].quantity``) for counts; ``change`` is ``changed``,
    ``added`` (an item Trackstar does not hold) or ``removed`` (an item the body drops)."""

    field: str
    name: str
    held: Any
    new: Any
    change: str = "changed"

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "held": self.held, "new": self.new, "change": self.change}


def field_changes(body: Mapping[str, Any], held: Mapping[str, Any]) -> list[FieldChange]:
    """The fields of ``body`` whose value differs from ``held`` (the record as Trackstar returns it)."""
    out: list[FieldChange] = []
    _walk(body, held if isinstance(held, Mapping) else {}, "", "", out)
    return out


def _walk(
    body: Mapping[str, Any], held: Mapping[str, Any], path: str, name: str, out: list[FieldChange]
) -> None:
    for key, new in body.items():
        sub, sub_name = f"{path}.{key}" if path else str(key), f"{name}.{key}" if name else str(key)
        _compare(new, held.get(key), sub, sub_name, out)


def _compare(new: Any, old: Any, path: str, name: str, out: list[FieldChange]) -> None:
    if isinstance(new, Mapping):
        _walk(new, old if isinstance(old, Mapping) else {}, path, name, out)
    elif isinstance(new, list) and new and all(isinstance(x, Mapping) for x in new) and not _is_tags(path):
        _items(new, old if isinstance(old, list) else [], path, name, out)
    elif isinstance(new, list):
        if not isinstance(old, list) or _plain_list(new, path) != _plain_list(old, path):
            out.append(FieldChange(path, name, old, new))
    elif not same_value(new, old):
        out.append(FieldChange(path, name, old, new))


def _items(new: list[Any], old: list[Any], path: str, name: str, out: list[FieldChange]) -> None:
    """Object items matched by their identity field (or position); an item only one side has is added/removed."""
    ident = next(
        (k for k in ITEM_KEYS if all(isinstance(x, Mapping) and x.get(k) not in (None, "") for x in new)),
        None,
    )
    if ident is not None:
        held = {str(x.get(ident)): x for x in old if isinstance(x, Mapping) and x.get(ident) is not None}
        labels = [(f"{ident}={x[ident]}", str(x[ident])) for x in new]
        new_by = {str(x[ident]): x for x in new}
        for label, value in labels:
            _item(new_by[value], held.get(value), f"{path}[{label}]", name, out)
        for value, item in held.items():
            if value not in new_by:
                out.append(FieldChange(f"{path}[{ident}={value}]", f"{name}[]", item, None, "removed"))
        return
    for i, item in enumerate(new):
        _item(item, old[i] if i < len(old) else None, f"{path}[{i}]", name, out)
    for i in range(len(new), len(old)):
        out.append(FieldChange(f"{path}[{i}]", f"{name}[]", old[i], None, "removed"))


def _item(new: Any, old: Any, path: str, name: str, out: list[FieldChange]) -> None:
    if old is None:
        out.append(FieldChange(path, f"{name}[]", None, new, "added"))
    elif isinstance(new, Mapping) and isinstance(old, Mapping):
        _walk(new, old, path, f"{name}[]", out)
    elif not same_value(new, old):
        out.append(FieldChange(path, f"{name}[]", old, new))


def _plain_list(values: Sequence[Any], path: str) -> list[str]:
    """A list of plain values (or one-key tag objects) in a comparable form; tags in any order."""
    forms = [json.dumps(_form(v), sort_keys=True, default=str) for v in values]
    return sorted(forms) if _is_tags(path) else forms


def _is_tags(path: str) -> bool:
    """Tags (``trackstar_tags``: strings and one-key objects) are a set, never items to match."""
    return path.rsplit(".", 1)[-1].endswith("tags")


def same_value(new: Any, old: Any) -> bool:
    """True when two scalars are the same value in Trackstar's eyes (numbers, instants, null/missing)."""
    return _form(new) == _form(old)


def _form(value: Any) -> Any:
    """The comparable form of a value: a number as a float, an ISO date or datetime as a UTC instant."""
    if value is None:
        return None
    if isinstance(value, bool):  # True == 1.0 in Python, not in JSON
        return ("bool", value)
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else str(value)
    if isinstance(value, str):
        text = value.strip()
        number = _number(text)
        if number is not None:
            return number
        instant = _instant(text)
        return instant if instant is not None else value
    if isinstance(value, Mapping):
        return {str(k): _form(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_form(v) for v in value]
    return value


def _number(text: str) -> float | None:
    if not text or not (text[0].isdigit() or text[0] in "+-."):
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _instant(text: str) -> str | None:
    """An ISO date or datetime as its UTC instant text (a datetime without offset is taken as UTC)."""
    if len(text) < 10 or text[4:5] != "-" or text[7:8] != "-":
        return None
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC).isoformat()
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()
