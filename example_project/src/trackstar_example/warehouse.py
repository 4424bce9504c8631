"""A deterministic DuckDB warehouse of order history, the source the example syncs to Trackstar.

One table, ``order_lines``, holds one row per line item for three customer accounts of a 3PL, each routed to
a Trackstar connection on a different integration (``customer`` is the connection column). A few percent of
orders carry the dirt real warehouses have (null-like strings, missing required fields, bad quantities and
prices, a duplicated key, an unmapped customer), so the sync's rejects have something to show; real values
that merely look null-like (country ``NA`` for Namibia, the company "None Such Ltd", a 0.00 price) are there
too and must survive. ``seed_dirt`` records which orders were made dirty and how, as ground truth for tests.

Run ``python -m trackstar_example.warehouse --path warehouse.duckdb --days 730`` to (re)seed a file.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

#: Fixed default end date so a seed with default arguments is byte-for-byte reproducible.
DEFAULT_END_DATE = date(2026, 11, 24)

ORDER_LINES_TABLE = "order_lines"
CUSTOMERS_TABLE = "customers"
DIRT_TABLE = "seed_dirt"


@dataclass(frozen=True)
class Customer:
    """One account in the warehouse and the Trackstar connection its orders go to."""

    customer: str
    connection: str
    integration: str
    warehouse_id: str
    share: float  # fraction of daily orders
    order_prefix: str
    channels: tuple[tuple[str, float], ...]
    products: tuple[tuple[str, float], ...]  # (sku, unit price)


# fmt: off
CUSTOMERS: tuple[Customer, ...] = (
    Customer(
        "acme", "acme_wms", "wms_sandbox", "wms_sandbox-wh-1", 0.45, "A",
        (("shopify", 0.7), ("amazon", 0.2), ("tiktok_shop", 0.1)),
        (
            ("ACME-KETTLE-GN", 89.00), ("ACME-KETTLE-BK", 89.00), ("ACME-GRINDER-01", 149.00),
            ("ACME-DRIPPER-V60", 24.50), ("ACME-FILTER-100", 7.99), ("ACME-SCALE-PRO", 59.95),
            ("ACME-MUG-12OZ", 18.00), ("ACME-MUG-16OZ", 21.00), ("ACME-BEANS-ETH-250", 16.50),
            ("ACME-BEANS-COL-250", 15.00), ("ACME-BEANS-DECAF-250", 15.50), ("ACME-TAMPER-58", 34.00),
            ("ACME-CARAFE-600", 29.00), ("ACME-GIFT-INSERT", 0.00),
        ),
    ),
    Customer(
        "globex", "globex_shiphero", "shiphero", "shiphero-wh-1", 0.35, "GX-",
        (("shopify", 0.5), ("amazon", 0.25), ("walmart", 0.1), ("wholesale", 0.15)),
        (
            ("GLX-TEE-BLK-S", 24.00), ("GLX-TEE-BLK-M", 24.00), ("GLX-TEE-BLK-L", 24.00),
            ("GLX-TEE-WHT-M", 24.00), ("GLX-HOOD-GRY-M", 58.00), ("GLX-HOOD-GRY-L", 58.00),
            ("GLX-CAP-NVY", 22.00), ("GLX-SOCK-3PK", 14.00), ("GLX-JKT-RAIN-M", 129.00),
            ("GLX-JKT-RAIN-L", 129.00), ("GLX-BEANIE-RED", 19.50), ("GLX-STICKER-PK", 0.00),
        ),
    ),
    Customer(
        "initech", "initech_shipbob", "shipbob", "shipbob-wh-1", 0.20, "INI-",
        (("shopify", 0.8), ("etsy", 0.2)),
        (
            ("INI-STAPLER-RED", 32.00), ("INI-STAPLER-BLK", 29.00), ("INI-PAPER-A4-500", 9.99),
            ("INI-PEN-GEL-12", 12.49), ("INI-NOTEBOOK-A5", 8.75), ("INI-DESK-MAT-XL", 39.00),
            ("INI-TPS-COVER-50", 11.00), ("INI-MONITOR-ARM", 119.00), ("INI-CABLE-KIT", 15.00),
            ("INI-SAMPLE-PACK", 0.00),
        ),
    ),
)

#: A customer value with no connection: its orders must come out as routing rejects.
UNMAPPED_CUSTOMER = "umbrella"
_UNMAPPED = Customer(
    UNMAPPED_CUSTOMER, "", "", "", 0.0, "U-", (("shopify", 1.0),),
    (("UMB-VIAL-T", 45.00), ("UMB-CASE-STEEL", 120.00), ("UMB-LABCOAT-M", 65.00)),
)

FIRST_NAMES = (
    "Olivia", "Liam", "Emma", "Noah", "Ava", "Mateo", "Sophia", "Lucas", "Mia", "Ethan", "Amara", "Kenji",
    "Priya", "Diego", "Fatima", "Hannah", "Jonas", "Chloe", "Tariq", "Ingrid", "Wei", "Zanele", "Grace",
    "Samuel", "Aroha", "Nadia", "Oscar", "Leila", "Tomasz", "Maya",
)
LAST_NAMES = (
    "Smith", "Johnson", "Garcia", "Nguyen", "Brown", "Okafor", "Müller", "Kowalski", "Tanaka", "Patel",
    "O'Brien", "Rossi", "Haddad", "Silva", "Andersson", "Kim", "Dubois", "Mokoena", "Shikongo", "Cohen",
    "Martinez", "Walker", "Nakamura", "Fischer", "Reyes",
)
STREETS = (
    "Main St", "Oak Ave", "Maple Dr", "Cedar Ln", "Elm St", "Pine Rd", "Lakeview Blvd", "Sunset Ave",
    "Park Pl", "River Rd", "Highland Ave", "Mill St", "Church St", "Station Rd", "Harbour Way",
)
UNITS = ("Apt 2B", "Suite 100", "Unit 7", "Apt 14", "Floor 3", "#305")
COMPANIES = (
    "None Such Ltd", "Vandelay Industries", "Bluth Company", "Dunder Mifflin", "Wayne Enterprises",
    "Initrode LLC", "Stark Logistics", "Pied Piper", "Hooli", "Soylent Corp",
)
NOTES = ("Leave at front door", "Gift - no invoice please", "Call on arrival", "Fragile")
EMAIL_DOMAINS = ("example.com", "example.net", "example.org")

#: Ship-to places per ISO country: (city, state or region, postal code).
ADDRESSES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "US": (
        ("Austin", "TX", "78701"), ("Portland", "OR", "97205"), ("Brooklyn", "NY", "11211"),
        ("Chicago", "IL", "60607"), ("Denver", "CO", "80202"), ("Seattle", "WA", "98101"),
        ("Atlanta", "GA", "30303"), ("Boston", "MA", "02116"), ("Miami", "FL", "33130"),
        ("San Diego", "CA", "92101"), ("Minneapolis", "MN", "55401"), ("Nashville", "TN", "37203"),
        ("Phoenix", "AZ", "85004"), ("Columbus", "OH", "43215"), ("Salt Lake City", "UT", "84101"),
        ("Raleigh", "NC", "27601"), ("Madison", "WI", "53703"), ("Burlington", "VT", "05401"),
    ),
    "CA": (("Toronto", "ON", "M5V 2T6"), ("Vancouver", "BC", "V6B 1A1"), ("Montreal", "QC", "H2Y 1C6")),
    "GB": (("London", "London", "EC1A 1BB"), ("Manchester", "Greater Manchester", "M1 1AE")),
    "DE": (("Berlin", "BE", "10115"), ("Munich", "BY", "80331")),
    "AU": (("Sydney", "NSW", "2000"), ("Melbourne", "VIC", "3000")),
    # Namibia: ISO code "NA", a real value that naive null handling would drop.
    "NA": (("Windhoek", "Khomas", "10005"), ("Swakopmund", "Erongo", "13001"), ("Walvis Bay", "Erongo", "13013")),
}
COUNTRY_WEIGHTS = (("US", 0.80), ("CA", 0.05), ("GB", 0.04), ("DE", 0.03), ("AU", 0.03), ("NA", 0.05))
PHONE_PREFIX = {"US": "+1", "CA": "+1", "GB": "+44", "DE": "+49", "AU": "+61", "NA": "+264"}
CURRENCY = {"US": "USD", "CA": "CAD", "GB": "GBP", "DE": "EUR", "AU": "AUD", "NA": "USD"}
SHIPPING_METHODS = (("Standard", 0.70), ("Expedited", 0.18), ("Overnight", 0.05), ("Economy", 0.07))
LINE_COUNT_WEIGHTS = ((1, 0.15), (2, 0.20), (3, 0.30), (4, 0.20), (5, 0.15))

#: Monday..Sunday multipliers (mean 1.0): more orders early in the week, fewer at weekends.
WEEKDAY_FACTOR = (1.18, 1.10, 1.04, 1.00, 0.96, 0.82, 0.90)

#: Null-like spellings the warehouse carries; all are null-like for Trackstar (see ``trackstar_dagster.base.nulls``).
NULL_LIKE = ("", "NULL", "n/a", "None", "null", " ", "N/A")

#: Probability per order of each dirt kind (unmapped customer orders are extra orders, drawn per day).
DIRT_RATES: dict[str, float] = {
    "null_like_required": 0.008,
    "missing_required": 0.008,
    "bad_quantity": 0.008,
    "bad_price": 0.006,
    "duplicate_order_id": 0.003,
    "null_like_optional": 0.010,
}
UNMAPPED_RATE = 0.003
#: Share of orders that get a free insert line (unit_price 0.00, valid).
FREE_ITEM_RATE = 0.05

#: Source columns each integration requires for ``create_order`` (from its write-info schema), per customer.
REQUIRED_HEADER = {
    "wms_sandbox": ("order_number", "ship_address1", "ship_city", "ship_state", "ship_postal_code", "ship_country"),
    "shiphero": (
        "order_number", "ship_name", "ship_address1", "ship_city", "ship_state", "ship_postal_code", "ship_country",
    ),
    "shipbob": (
        "reference_id", "ship_name", "ship_address1", "ship_city", "ship_state", "ship_postal_code", "ship_country",
    ),
}
REQUIRED_LINE = {"wms_sandbox": ("product_id",), "shiphero": ("sku",), "shipbob": ("product_id",)}
OPTIONAL_TEXT = ("ship_company", "ship_address2", "ship_phone", "ship_email", "notes")
# fmt: on

# Column order and SQL types of ``order_lines``.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("order_id", "VARCHAR"),
    ("order_number", "VARCHAR"),
    ("reference_id", "VARCHAR"),
    ("order_date", "TIMESTAMP"),
    ("customer", "VARCHAR"),
    ("channel", "VARCHAR"),
    ("ship_name", "VARCHAR"),
    ("ship_company", "VARCHAR"),
    ("ship_address1", "VARCHAR"),
    ("ship_address2", "VARCHAR"),
    ("ship_city", "VARCHAR"),
    ("ship_state", "VARCHAR"),
    ("ship_postal_code", "VARCHAR"),
    ("ship_country", "VARCHAR"),
    ("ship_phone", "VARCHAR"),
    ("ship_email", "VARCHAR"),
    ("shipping_method", "VARCHAR"),
    ("shipping_price", "DECIMAL(10,2)"),
    ("currency", "VARCHAR"),
    ("notes", "VARCHAR"),
    ("line_number", "INTEGER"),
    ("sku", "VARCHAR"),
    ("product_id", "VARCHAR"),
    ("quantity", "INTEGER"),
    ("unit_price", "DECIMAL(10,2)"),
    ("discount_amount", "DOUBLE"),
)
HEADER_COLUMNS = tuple(name for name, _ in COLUMNS[:20])
LINE_COLUMNS = tuple(name for name, _ in COLUMNS[20:])


@dataclass
class SeedSummary:
    """What a seed wrote: sizes, date range, and how many orders carry each kind of dirt."""

    path: str
    rows: int
    orders: int
    orders_per_customer: dict[str, int]
    dirty_orders: dict[str, int]
    first_order_date: datetime | None
    last_order_date: datetime | None
    seconds: float
    dirty_share: float = field(init=False)

    def __post_init__(self) -> None:
        self.dirty_share = sum(self.dirty_orders.values()) / self.orders if self.orders else 0.0

    def format(self) -> str:
        """Human-readable summary for the CLI and the demo."""
        lines = [
            f"warehouse {self.path}: {self.rows:,} line rows, {self.orders:,} orders "
            f"({self.first_order_date:%Y-%m-%d} .. {self.last_order_date:%Y-%m-%d}) in {self.seconds:.2f}s",
            "orders per customer: "
            + ", ".join(f"{k}={v:,}" for k, v in sorted(self.orders_per_customer.items())),
            f"dirty orders: {sum(self.dirty_orders.values()):,} ({self.dirty_share:.1%})",
        ]
        lines += [f"  {kind}: {n:,}" for kind, n in sorted(self.dirty_orders.items())]
        return "\n".join(lines)


def _weighted(rng: random.Random, options: tuple[tuple[Any, float], ...]) -> Any:
    """One choice from ``(value, weight)`` pairs (weights need not sum to 1)."""
    return rng.choices([o for o, _ in options], weights=[w for _, w in options])[0]


def _product_id(customer: str, index: int) -> str:
    """A stable Trackstar-style product id for a customer's catalog entry."""
    return f"prod_{customer}_{index + 1:04d}"


def _reference_id(rng: random.Random, channel: str) -> str:
    """An external order id shaped like the channel's own ids."""
    if channel == "amazon":
        return f"11{rng.randint(1, 9)}-{rng.randint(0, 9_999_999):07d}-{rng.randint(0, 9_999_999):07d}"
    if channel == "walmart":
        return f"{rng.randint(10**14, 10**15 - 1)}"
    if channel == "etsy":
        return f"{rng.randint(10**9, 10**10 - 1)}"
    if channel == "wholesale":
        return f"PO-{rng.randint(10_000, 99_999)}"
    if channel == "tiktok_shop":
        return f"57{rng.randint(10**15, 10**16 - 1)}"
    return f"{rng.randint(5 * 10**12, 6 * 10**12 - 1)}"  # Shopify order id


def _address(rng: random.Random) -> dict[str, Any]:
    """A ship-to address, name and contact details for one order."""
    country = _weighted(rng, COUNTRY_WEIGHTS)
    city, state, postal = rng.choice(ADDRESSES[country])
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    local = f"{first}.{last}".lower().replace("'", "").replace("ü", "ue")
    return {
        "ship_name": f"{first} {last}",
        "ship_company": rng.choice(COMPANIES) if rng.random() < 0.15 else None,
        "ship_address1": f"{rng.randint(1, 9899)} {rng.choice(STREETS)}",
        "ship_address2": rng.choice(UNITS) if rng.random() < 0.25 else None,
        "ship_city": city,
        "ship_state": state,
        "ship_postal_code": postal,
        "ship_country": country,
        "ship_phone": (
            f"{PHONE_PREFIX[country]} {rng.randint(200, 989)}-555-{rng.randint(100, 199):04d}"
            if rng.random() < 0.7
            else None
        ),
        "ship_email": f"{local}{rng.randint(1, 99)}@{rng.choice(EMAIL_DOMAINS)}"
        if rng.random() < 0.9
        else None,
        "currency": CURRENCY[country],
    }


def _daily_mean(day: date, start: date, days: int, orders_per_day: int) -> float:
    """Expected orders on a day: weekday pattern, holiday peak, slow growth over the period."""
    season = {11: 1.30, 12: 1.40, 1: 0.85, 2: 0.85}.get(day.month, 1.0)
    growth = 0.85 + 0.30 * ((day - start).days / max(days - 1, 1))
    return orders_per_day * WEEKDAY_FACTOR[day.weekday()] * season * growth


def _make_lines(
    rng: random.Random, cust: Customer, n_lines: int, first_line: int = 1
) -> list[dict[str, Any]]:
    """``n_lines`` distinct paid products, sometimes plus a free insert (a real 0.00 price)."""
    paid = [i for i, (_, price) in enumerate(cust.products) if price > 0]
    free = [i for i, (_, price) in enumerate(cust.products) if price == 0]
    picks = rng.sample(paid, k=min(n_lines, len(paid)))
    if free and rng.random() < FREE_ITEM_RATE:
        picks.append(free[0])
    lines = []
    for offset, idx in enumerate(picks):
        sku, price = cust.products[idx]
        discount = round(price * 0.1, 2) if price and rng.random() < 0.1 else None
        quantity = 1 if price == 0 else _weighted(rng, ((1, 0.70), (2, 0.20), (3, 0.07), (6, 0.03)))
        lines.append(
            {
                "line_number": first_line + offset,
                "sku": sku,
                "product_id": _product_id(cust.customer, idx),
                "quantity": quantity,
                "unit_price": price,
                "discount_amount": discount,
            }
        )
    return lines


def _dirty(
    rng: random.Random, kind: str, cust: Customer, header: dict[str, Any], lines: list[dict[str, Any]]
) -> tuple[str, str, bool]:
    """Make one order dirty in place; returns (field, detail, expect_reject)."""
    integration = cust.integration
    if kind == "null_like_required":
        col = rng.choice(REQUIRED_HEADER[integration] + REQUIRED_LINE[integration])
        value = rng.choice(NULL_LIKE)
        if col in header:
            header[col] = value
        else:
            rng.choice(lines)[col] = value
        return col, repr(value), True
    if kind == "missing_required":
        col = rng.choice([c for c in REQUIRED_HEADER[integration] if c.startswith("ship_")])
        header[col] = None
        return col, "NULL", True
    if kind == "bad_quantity":
        line = rng.choice(lines)
        line["quantity"] = rng.choice((0, -1))
        return "quantity", str(line["quantity"]), True
    if kind == "bad_price":
        line = rng.choice(lines)
        if integration == "shiphero":  # unit_price is required there
            line["unit_price"] = None
            return "unit_price", "NULL", True
        line["unit_price"] = -round(rng.uniform(1, 50), 2)
        return "unit_price", str(line["unit_price"]), True
    if kind == "null_like_optional":
        col = rng.choice((*OPTIONAL_TEXT, "discount_amount"))
        if col == "discount_amount":
            rng.choice(lines)["discount_amount"] = math.nan
            return col, "NaN", False
        value = rng.choice(NULL_LIKE)
        header[col] = value
        return col, repr(value), False
    raise ValueError(f"unknown dirt kind {kind!r}")


def _pick_customer(rng: random.Random) -> Customer:
    """A customer by its share of orders; a rare order for the unmapped one."""
    if rng.random() < UNMAPPED_RATE:
        return _UNMAPPED
    return rng.choices(CUSTOMERS, weights=[c.share for c in CUSTOMERS])[0]


def generate(
    *, days: int = 730, end_date: date | None = None, seed: int = 7, orders_per_day: int = 40
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Build the ``order_lines`` frame and the dirt ground-truth frame, without touching a database."""
    if days < 1:
        raise ValueError("days must be >= 1")
    end = end_date or DEFAULT_END_DATE
    start = end - timedelta(days=days - 1)
    rng = random.Random(seed)
    cols: dict[str, list[Any]] = {name: [] for name, _ in COLUMNS}
    nan_discount: list[bool] = []
    dirt: dict[str, list[Any]] = {
        k: [] for k in ("order_id", "customer", "kind", "field", "detail", "expect_reject")
    }
    seq: Counter[str] = Counter()
    dirt_kinds = tuple(DIRT_RATES)
    dirt_weights = tuple(DIRT_RATES.values())
    dirt_total = sum(dirt_weights)

    def emit(header: dict[str, Any], lines: list[dict[str, Any]]) -> None:
        for line in lines:
            for name in HEADER_COLUMNS:
                cols[name].append(header[name])
            for name in LINE_COLUMNS:
                cols[name].append(line[name])
            d = line["discount_amount"]
            nan_discount.append(isinstance(d, float) and math.isnan(d))

    for day_index in range(days):
        day = start + timedelta(days=day_index)
        mean = _daily_mean(day, start, days, orders_per_day)
        n_orders = max(0, round(rng.gauss(mean, math.sqrt(mean))))
        midnight = datetime(day.year, day.month, day.day)
        # Orders arrive through the day, busiest in US afternoon/evening (UTC 14:00-04:00).
        seconds = sorted(
            int((rng.triangular(8, 32, 22) % 24) * 3600) + rng.randint(0, 59) for _ in range(n_orders)
        )
        for sec in seconds:
            cust = _pick_customer(rng)
            seq[cust.customer] += 1
            n = seq[cust.customer]
            channel = _weighted(rng, cust.channels)
            header: dict[str, Any] = {
                "order_id": f"{cust.customer.upper()}-{n:06d}",
                "order_number": f"{cust.order_prefix}{100_000 + n}",
                "reference_id": _reference_id(rng, channel),
                "order_date": midnight + timedelta(seconds=sec),
                "customer": cust.customer,
                "channel": channel,
                **_address(rng),
                "shipping_method": _weighted(rng, SHIPPING_METHODS),
                "shipping_price": None,
                "notes": rng.choice(NOTES) if rng.random() < 0.05 else None,
            }
            if header["ship_country"] != "US":
                header["shipping_method"] = "International"
            header["shipping_price"] = {"Standard": 5.95, "Expedited": 12.50, "Overnight": 29.00}.get(
                header["shipping_method"], 0.00 if header["shipping_method"] == "Economy" else 24.00
            )
            lines = _make_lines(rng, cust, _weighted(rng, LINE_COUNT_WEIGHTS))
            if cust is _UNMAPPED:
                emit(header, lines)
                _record(dirt, header, "unmapped_customer", "customer", repr(cust.customer), True)
                continue
            kind = rng.choices(dirt_kinds, weights=dirt_weights)[0] if rng.random() < dirt_total else None
            if kind == "bad_price" and cust.integration == "shipbob":
                kind = "bad_quantity"  # ShipBob takes no prices, so a bad one would not be a reject there
            if kind == "duplicate_order_id":
                # The same key loaded twice with a different address: conflicting headers, same day.
                emit(header, lines)
                twin = {**header, **_address(rng)}
                twin_lines = _make_lines(rng, cust, rng.randint(1, 3), first_line=len(lines) + 1)
                emit(twin, twin_lines)
                _record(dirt, header, kind, "order_id", "2 headers, different ship_to_address", True)
                continue
            if kind is not None:
                field_name, detail, expect_reject = _dirty(rng, kind, cust, header, lines)
                _record(dirt, header, kind, field_name, detail, expect_reject)
            emit(header, lines)

    frame = pd.DataFrame(cols)
    frame["_nan_discount"] = nan_discount
    return frame, pd.DataFrame(dirt)


def _record(
    dirt: dict[str, list[Any]], header: dict[str, Any], kind: str, field_name: str, detail: str, reject: bool
) -> None:
    """Append one row of dirt ground truth."""
    dirt["order_id"].append(header["order_id"])
    dirt["customer"].append(header["customer"])
    dirt["kind"].append(kind)
    dirt["field"].append(field_name)
    dirt["detail"].append(detail)
    dirt["expect_reject"].append(reject)


def _select_sql(source: str) -> str:
    """Cast the scanned frame to the warehouse types (NaN discounts are restored as real NaN)."""
    parts = []
    for name, sql_type in COLUMNS:
        if name == "discount_amount":
            parts.append(f"CASE WHEN _nan_discount THEN 'NaN'::DOUBLE ELSE discount_amount END AS {name}")
        else:
            parts.append(f"CAST({name} AS {sql_type}) AS {name}")
    # when the order last changed (the changes sensor watches it): as seeded, when it was placed
    parts.append("CAST(order_date AS TIMESTAMP) AS updated_at")
    return f"SELECT {', '.join(parts)} FROM {source} ORDER BY order_date, order_id, line_number"


def seed_warehouse(
    path: str | Path,
    *,
    days: int = 730,
    end_date: date | None = None,
    seed: int = 7,
    orders_per_day: int = 40,
) -> SeedSummary:
    """(Re)create the DuckDB warehouse at ``path``: ``order_lines``, ``customers`` and ``seed_dirt``.

    Idempotent: the tables are dropped and recreated in one transaction, so the same arguments always give
    the same rows.
    """
    started = time.perf_counter()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines, dirt = generate(days=days, end_date=end_date, seed=seed, orders_per_day=orders_per_day)
    customers = pd.DataFrame(
        {
            "customer": [c.customer for c in CUSTOMERS],
            "connection": [c.connection for c in CUSTOMERS],
            "integration": [c.integration for c in CUSTOMERS],
            "warehouse_id": [c.warehouse_id for c in CUSTOMERS],
        }
    )
    with duckdb.connect(str(path)) as con:
        con.register("_lines_src", lines)
        con.register("_dirt_src", dirt)
        con.register("_customers_src", customers)
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(f"CREATE OR REPLACE TABLE {ORDER_LINES_TABLE} AS {_select_sql('_lines_src')}")
            con.execute(
                f"CREATE OR REPLACE TABLE {CUSTOMERS_TABLE} AS SELECT CAST(customer AS VARCHAR) AS customer, "
                "CAST(connection AS VARCHAR) AS connection, CAST(integration AS VARCHAR) AS integration, "
                "CAST(warehouse_id AS VARCHAR) AS warehouse_id FROM _customers_src"
            )
            con.execute(
                f"CREATE OR REPLACE TABLE {DIRT_TABLE} AS SELECT CAST(order_id AS VARCHAR) AS order_id, "
                "CAST(customer AS VARCHAR) AS customer, CAST(kind AS VARCHAR) AS kind, "
                "CAST(field AS VARCHAR) AS field, CAST(detail AS VARCHAR) AS detail, "
                "CAST(expect_reject AS BOOLEAN) AS expect_reject FROM _dirt_src ORDER BY order_id"
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        for name in ("_lines_src", "_dirt_src", "_customers_src"):
            con.unregister(name)
        rows, orders, first, last = con.execute(
            f"SELECT count(*), count(DISTINCT order_id), min(order_date), max(order_date) FROM {ORDER_LINES_TABLE}"
        ).fetchone()
        per_customer = dict(
            con.execute(
                f"SELECT customer, count(DISTINCT order_id) FROM {ORDER_LINES_TABLE} GROUP BY customer"
            ).fetchall()
        )
    return SeedSummary(
        path=str(path),
        rows=rows,
        orders=orders,
        orders_per_customer=per_customer,
        dirty_orders=dict(Counter(dirt["kind"])),
        first_order_date=first,
        last_order_date=last,
        seconds=time.perf_counter() - started,
    )


def main(argv: list[str] | None = None) -> int:
    """CLI: seed a warehouse file and print what was written."""
    parser = argparse.ArgumentParser(
        prog="python -m trackstar_example.warehouse", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--path", default="warehouse.duckdb", help="DuckDB file to (re)create")
    parser.add_argument("--days", type=int, default=730, help="days of history ending at --end-date")
    parser.add_argument(
        "--end-date", default=None, help=f"last order day: YYYY-MM-DD or 'today' (default {DEFAULT_END_DATE})"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--orders-per-day", type=int, default=40)
    args = parser.parse_args(argv)
    end = None
    if args.end_date == "today":
        end = datetime.now(UTC).date()
    elif args.end_date:
        end = date.fromisoformat(args.end_date)
    summary = seed_warehouse(
        args.path, days=args.days, end_date=end, seed=args.seed, orders_per_day=args.orders_per_day
    )
    print(summary.format())
    return 0


if __name__ == "__main__":
    sys.exit(main())
