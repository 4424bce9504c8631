"""How much a column's name says it holds a field: case, separators, synonyms, and the nesting as a prefix.

Why a module of its own: names are the first evidence a suggested mapping weighs, and the synonym lists are
the part users will want to read and extend; values are judged in ``suggest_values``. Nothing here reads a
row. A column name is split into words (``ShipToCity`` -> ship, to, city; ``address_line_1`` -> address,
line, 1), a leading context (``ship_to_`` / ``shipping_``: the ship-to address; ``bill_to_``; ``line_``/
``item_``: a line item) is set apart, and the rest is put in a canonical spelling (``zip`` -> postal_code).
A field path is read the same way: ``ship_to_address.city`` is context ``ship``, leaf ``city``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: canonical leaf <- the spellings that mean it (words joined by "_", after splitting case and separators)
SYNONYMS: dict[str, tuple[str, ...]] = {
    "quantity": ("qty", "quantity_ordered", "qty_ordered", "ordered_qty", "ordered_quantity", "units"),
    "postal_code": ("zip", "zip_code", "zipcode", "postcode", "post_code", "postal", "zip_postal_code"),
    "address1": ("address_1", "address_line_1", "address_line1", "addr1", "addr_1", "street", "street1",
                 "street_1", "street_address", "line1", "line_1", "address"),
    "address2": ("address_2", "address_line_2", "address_line2", "addr2", "addr_2", "street2", "street_2",
                 "line2", "line_2", "apartment", "suite"),
    "address3": ("address_3", "address_line_3", "line3", "line_3"),
    "city": ("town", "locality"),
    "state": ("province", "region", "state_code", "state_province", "province_code"),
    "country": ("country_code", "country_iso", "iso_country", "country_iso2"),
    "full_name": ("name", "recipient", "recipient_name", "customer_name", "contact_name", "addressee"),
    "first_name": ("firstname", "given_name", "forename"),
    "last_name": ("lastname", "surname", "family_name"),
    "company": ("company_name", "business_name", "organization", "organisation"),
    "phone": ("phone_number", "telephone", "tel", "mobile", "phone_no", "mobile_number"),
    "email": ("email_address", "e_mail", "mail", "emailaddress"),
    "sku": ("product_sku", "item_sku", "sku_code", "variant_sku"),
    "product_id": ("item_id", "variant_id"),
    "unit_price": ("price", "item_price", "price_each", "unit_cost", "line_price"),
    "order_number": ("order_no", "order_num", "order_name", "order_nbr"),
    "reference_id": ("reference", "ref", "ref_id", "external_id", "external_order_id", "reference_number"),
    "note": ("notes", "packing_note", "packing_notes", "comment", "comments", "instructions"),
    "shipping_method": ("ship_method", "shipping_service", "ship_via", "shipping_method_name"),
    "shipping_price": ("shipping_cost", "shipping_amount", "shipping_fee", "total_shipping", "freight_cost"),
    "currency": ("invoice_currency_code", "currency_code", "invoice_currency"),
    "discount_amount": ("discount", "line_discount"),
    "warehouse_id": ("warehouse", "wh_id", "facility_id", "warehouse_code"),
    "delivery_date": ("deliver_by", "delivery_by", "deliver_by_date", "due_date", "requested_delivery_date"),
    "tax": ("tax_amount", "line_tax"),
    "total_price": ("order_total", "total", "grand_total"),
    "service_level": ("service", "shipping_speed", "service_code", "ship_service"),
    "channel": ("sales_channel",),
}  # fmt: skip

#: context word sequences a column name may start with -> the context they name
CONTEXTS: tuple[tuple[tuple[str, ...], str], ...] = tuple(
    sorted(
        [
            *((tuple(p.split("_")), "ship") for p in (
                "ship_to_address", "shipping_address", "ship_address", "ship_to", "shipto", "shipping",
                "ship", "recipient", "delivery_address", "destination", "dest")),
            *((tuple(p.split("_")), "bill") for p in (
                "bill_to_address", "billing_address", "bill_address", "bill_to", "billing", "bill")),
            *((tuple(p.split("_")), "item") for p in ("line_item", "line", "item", "product")),
            *((tuple(p.split("_")), "customer") for p in ("customer", "cust", "buyer", "client")),
            *((tuple(p.split("_")), "order") for p in ("order",)),
        ],
        key=lambda pair: -len(pair[0]),
    )
)  # fmt: skip

#: a field path's parent object -> its context
PARENTS = {"ship_to_address": "ship", "bill_to_address": "bill", "line_items": "item", "items": "item"}

#: how well a column's context fits a field's (column context, field context) -> factor
_CONTEXT_FIT = {
    (None, None): 1.0,
    (None, "item"): 0.97,  # a line-items table names item columns plainly (sku, quantity)
    (None, "ship"): 0.9,  # an address without prefix is the ship-to address of an order
    ("customer", "ship"): 0.85,  # customer_email, customer_name
    ("order", None): 1.0,
    ("order", "item"): 0.6,
    ("customer", None): 0.6,
    (None, "bill"): 0.6,
    ("customer", "bill"): 0.7,
    ("product", "item"): 1.0,
}

_CANON = {spelling: leaf for leaf, spellings in SYNONYMS.items() for spelling in spellings}
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SPLIT = re.compile(r"[^0-9a-zA-Z]+")


def words(name: str) -> tuple[str, ...]:
    """``ShipToCity`` -> (ship, to, city); ``address_line_1`` -> (address, line, 1); ``address1`` stays."""
    return tuple(w.lower() for w in _SPLIT.split(_CAMEL.sub("_", name)) if w)


def canon(ws: tuple[str, ...]) -> str:
    """The canonical spelling of a leaf: ``("zip", "code")`` -> ``postal_code``."""
    joined = "_".join(ws)
    return _CANON.get(joined, joined)


@dataclass(frozen=True)
class Reading:
    """One way to read a name: its context (or None) and its canonical leaf; ``raw`` as spelled."""

    context: str | None
    leaf: str
    raw: str


def column_readings(column: str) -> list[Reading]:
    """Every reading of a column name: as a whole, and with each leading context set apart."""
    ws = words(column)
    out = [Reading(None, canon(ws), "_".join(ws))]
    for prefix, context in CONTEXTS:
        if len(ws) > len(prefix) and ws[: len(prefix)] == prefix:
            rest = ws[len(prefix) :]
            out.append(Reading(context, canon(rest), "_".join(rest)))
    return out


def field_reading(path: str) -> Reading:
    """A field path's reading: the context of its parent object and its leaf."""
    parts = path.split(".")
    leaf = words(parts[-1])
    parent = parts[-2] if len(parts) > 1 else None
    context = PARENTS.get(parent, parent) if parent else None
    return Reading(context, canon(leaf), "_".join(leaf))


def name_score(column: str, path: str) -> tuple[float, str]:
    """(0..1, why): 1 the same name, ~0.9 a synonym, lower when the context only half fits, 0 unrelated."""
    field = field_reading(path)
    whole = "_".join(words(path))
    if "_".join(words(column)) == whole:
        return 1.0, "name: the field's path"
    best, why = 0.0, ""
    for reading in column_readings(column):
        if reading.leaf != field.leaf:
            continue
        fit = _context_fit(reading.context, field.context)
        score = fit * (1.0 if reading.raw == field.raw else 0.92)
        if score > best:
            how = "same name" if reading.raw == field.raw else f"synonym of {field.raw}"
            best, why = score, f"name: {how}" + (f" ({reading.context} prefix)" if reading.context else "")
    if best == 0.0:
        best, why = _overlap(column, field)
    return round(best, 3), why


def _context_fit(column_context: str | None, field_context: str | None) -> float:
    if column_context == field_context:
        return 1.0
    return _CONTEXT_FIT.get((column_context, field_context), 0.0)


def _overlap(column: str, field: Reading) -> tuple[float, str]:
    """The field's leaf words all inside the column's name, with a few words more: a weak hint."""
    col = set(words(column))
    leaf = set(field.raw.split("_"))
    if not leaf <= col or len(leaf) == 0:
        return 0.0, ""
    extra = len(col - leaf - {"ship", "shipping", "to", "address", "line", "item"})
    return max(0.0, 0.7 - 0.1 * extra), f"name: contains {field.raw}"
