"""Where each write action goes: its create path, update path and how to find a record it may have made.

The writer needs this table to send an update (``upsert`` mode) and to reconcile an unknown outcome
(look the record up before sending it again). Paths follow Trackstar's WMS write endpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote


@dataclass(frozen=True)
class ActionSpec:
    """One write action.

    ``lookup_fields`` are body fields that identify the record in Trackstar's list endpoint (used before
    the ``trackstar_tags[contains]`` look-up, because the WMS's own id survives edits made elsewhere).
    """

    action: str
    resource_path: str
    create: tuple[str, str]
    update: tuple[str, str] | None
    lookup_path: str
    lookup_fields: tuple[str, ...] = field(default=())

    @property
    def resource(self) -> str:
        """``/wms/inbound-shipments`` -> ``inbound-shipments`` (the sandbox's resource name)."""
        return self.resource_path.rstrip("/").rsplit("/", 1)[-1]

    def update_request(self, trackstar_id: str) -> tuple[str, str]:
        """(method, path) of the update of one record; ValueError when the action has no update path."""
        if self.update is None:
            raise ValueError(f"{self.action} has no update path; upsert is not possible")
        method, template = self.update
        return method, template.format(id=quote(str(trackstar_id), safe=""))

    def lookup_filters(self, body: dict[str, Any]) -> dict[str, str] | None:
        """Filters that find this body's record by a natural id (``reference_id``), or None."""
        for name in self.lookup_fields:
            value = body.get(name)
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
                return {name: str(value)}
        return None


def _spec(
    action: str, resource: str, *, update: bool = True, lookup_fields: tuple[str, ...] = ()
) -> ActionSpec:
    path = f"/wms/{resource}"
    return ActionSpec(
        action=action,
        resource_path=path,
        create=("POST", path),
        update=("PUT", f"{path}/{{id}}") if update else None,
        lookup_path=path,
        lookup_fields=lookup_fields,
    )


#: The actions the writer knows. Orders have ``reference_id`` (a filter of ``GET /wms/orders``); the
#: others are found by the key tag every body carries in ``trackstar_tags``.
ACTIONS: dict[str, ActionSpec] = {
    spec.action: spec
    for spec in (
        _spec("create_order", "orders", lookup_fields=("reference_id",)),
        _spec("create_return", "returns"),
        _spec("create_product", "products"),
        _spec("create_inbound_shipment", "inbound-shipments"),
        _spec("create_kit", "kits"),
    )
}


def spec_for(action: str) -> ActionSpec:
    """The spec of ``action``; KeyError naming the known actions."""
    try:
        return ACTIONS[action]
    except KeyError:
        raise KeyError(f"unknown write action {action!r}; known: {sorted(ACTIONS)}") from None
