"""The reject list of one ``build_payloads`` call, and the check outcomes made from its failures.

Why a module of its own: every stage of the build (record screening, columns, pandera, body validation)
refuses records the same way; the ``Rejects`` collector is handed to each of them, holds that bookkeeping
and turns it into the ``rejects`` frame and the ``CheckOutcome`` list, so the stages only say what failed
and why.

What a reject shows: the source cell as it was (``"NULL"``, ``" 0 "``, ``1e+19``), as text (``truncate``:
never raising, lone surrogates escaped, cut at ``VALUE_MAX``). The rejects frame is data (it goes where the
source rows are) and keeps personal values; the check outcomes become Dagster metadata and mask them
(``previews.mask_value``), as the previews of the rejects do.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pandas as pd

from trackstar_dagster.mapping import validation as v
from trackstar_dagster.mapping.cells import none_mask, obj_array
from trackstar_dagster.mapping.previews import mask_value
from trackstar_dagster.mapping.records import Records

VALUE_MAX = 80

#: the check outcomes' descriptions, by check name
DESCRIPTIONS = {
    "coercion": "every mapped value converts to its field's JSON type",
    "conflicting header values": "rows of one record agree on every header field",
    "base schema rows": "Base Schema rules on the flat rows (quantity >= 1, prices >= 0, key not null)",
    "bodies": "every finished body passes the integration's write-info schema",
}


def truncate(value: Any) -> str | None:
    """A value as the text a reject or a failure case shows: never raising, always valid Unicode, cut at
    ``VALUE_MAX``. A lone surrogate is written as its escape (``\\ud800``), so the rejects frame can be stored."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, str):
        text = value
    elif isinstance(value, dict | list):
        try:
            text = orjson.dumps(value, default=str).decode()
        except TypeError:  # a lone surrogate, an integer beyond 64 bits: Python's own form
            text = _text(value)
    else:
        text = _text(value)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= VALUE_MAX else text[: VALUE_MAX - 1] + "…"


def _text(value: Any) -> str:
    try:
        return str(value)
    except Exception:  # an int with more digits than Python writes, an object whose str() fails
        return f"(an integer of {value.bit_length()} bits)" if isinstance(value, int) else "(no text form)"


def _masked(columns: list[Any], cases: list[Any]) -> np.ndarray:
    """Failure cases with the values of personal fields masked (``previews.mask_value``), per column once."""
    personal = {c for c in set(map(str, columns)) if mask_value(c, "x") != "x"}
    if not personal:
        return obj_array(cases)
    return obj_array(
        [mask_value(str(c), x) if str(c) in personal else x for c, x in zip(columns, cases, strict=True)]
    )


def failure_frame(reasons: list[str], fields: list[str], cases: list[Any], index: Any) -> pd.DataFrame:
    """Failure cases of one check (``check, column, failure_case, index``), each case shown by ``truncate``."""
    return pd.DataFrame(
        {
            "check": reasons,
            "column": fields,
            "failure_case": obj_array([truncate(x) for x in cases]),
            "index": index,
        }
    )


class Rejects:
    """The collector of one build's refusals: one reject per (record, field, reason), failure cases per check.

    Handed to each stage that refuses; the records' layout (``Records``) places a refusal's source rows.
    """

    def __init__(self, records: Records) -> None:
        self.records = records
        self.rec: list[int] = []
        self.field: list[str] = []
        self.reason: list[str] = []
        self.value: list[Any] = []
        self.failures: dict[str, list[pd.DataFrame]] = {}
        #: (record, field) already refused by coercion: a later pandera failure of it adds nothing better
        self.coerced: set[tuple[int, str]] = set()

    def reject(self, rec: int, fld: str, reason: str, value: Any, coerced: bool = False) -> None:
        """Refuse record ``rec`` for ``reason`` (naming ``fld``), showing ``value`` (the source cell)."""
        if coerced:
            self.coerced.add((int(rec), fld))
        self.rec.append(int(rec))
        self.field.append(fld)
        self.reason.append(reason)
        self.value.append(value)

    def add_failures(self, check: str, *frames: pd.DataFrame) -> None:
        """Keep failure cases (``failure_frame``) for the outcome of ``check``."""
        self.failures.setdefault(check, []).extend(frames)

    def record_failures(
        self, check: str, recs: np.ndarray, fld: str, reason: str | list[str], values: np.ndarray | list[Any]
    ) -> None:
        """Reject records in bulk and keep the failure cases for the check outcome."""
        if not len(recs):
            return
        reasons = [reason] * len(recs) if isinstance(reason, str) else reason
        vals = list(values)
        for r, why, val in zip(recs.tolist(), reasons, vals, strict=True):
            self.reject(r, fld, why, val, coerced=check == "coercion")
        src = self.records.src_sorted[self.records.starts[recs]]
        self.add_failures(check, failure_frame(reasons, [fld] * len(recs), vals, src))

    def row_failures(
        self, check: str, rows: np.ndarray, fld: str, reasons: list[str], values: list[Any]
    ) -> None:
        """Reject the records of failing sorted rows (one reject per record and reason)."""
        recs = self.records.rec_sorted[rows]
        src = self.records.src_sorted[rows]
        for r, why, val in zip(recs.tolist(), reasons, values, strict=True):
            self.reject(r, fld, why, val, coerced=check == "coercion")
        self.add_failures(check, failure_frame(reasons, [fld] * len(rows), values, src))

    def refused(self) -> np.ndarray:
        """Bool mask over records: refused at least once."""
        bad = np.zeros(self.records.R, dtype=bool)
        if self.rec:
            bad[np.unique(np.asarray(self.rec, dtype=np.int64))] = True
        return bad

    def frame(self) -> pd.DataFrame:
        """The rejects frame (``REJECT_COLUMNS``): one row per (record, field, reason), by record."""
        if not self.rec:
            return pd.DataFrame(
                {
                    "key": pd.Series([], dtype="str"),
                    "connection": pd.Series([], dtype="str"),
                    "source_rows": pd.Series([], dtype=object),
                    "field": pd.Series([], dtype="str"),
                    "reason": pd.Series([], dtype="str"),
                    "value": pd.Series([], dtype="str"),
                }
            )
        frame = pd.DataFrame(
            {
                "rec": self.rec,
                "field": self.field,
                "reason": self.reason,
                "value": [truncate(x) for x in self.value],
            }
        )
        frame = frame.drop_duplicates(["rec", "field", "reason"]).sort_values("rec", kind="stable")
        recs = frame["rec"].to_numpy()
        records = self.records
        return pd.DataFrame(
            {
                "key": pd.Series(records.rec_key[recs], dtype="str"),
                "connection": pd.Series(records.rec_conn[recs], dtype="str"),
                "source_rows": pd.Series(records.source_rows(recs), dtype=object),
                "field": pd.Series(frame["field"].to_numpy(), dtype="str"),
                "reason": pd.Series(frame["reason"].to_numpy(), dtype="str"),
                "value": pd.Series(frame["value"].to_numpy(), dtype="str"),
            }
        )

    def checks(self, sent: int, integrations: list[str], key_columns: list[str]) -> list[v.CheckOutcome]:
        """One outcome per check (``<integration> rows`` per schema group), then ``records_routed``."""
        out = []
        names = [
            "coercion",
            "conflicting header values",
            "base schema rows",
            *[f"{name} rows" for name in integrations],
            "bodies",
        ]
        for name in dict.fromkeys(names):
            frames = self.failures.get(name, [])
            fc = pd.concat(frames, ignore_index=True) if frames else v.empty_failures()
            if len(fc):  # outcomes become asset-check metadata, kept forever: personal values masked
                fc["failure_case"] = _masked(fc["column"].tolist(), fc["failure_case"].tolist())
            out.append(
                v.CheckOutcome(
                    name=name.replace(" ", "_"),
                    passed=not len(fc),
                    severity="WARN",
                    description=DESCRIPTIONS.get(
                        name, f"{name.split(' ')[0]} write-info rules on the flat rows"
                    ),
                    failures=v.failure_summary(fc),
                    metadata={"failing_values": len(fc)},
                )
            )
        records = self.records
        routing = none_mask(records.rec_key) | (records.rec_group < 0)
        out.append(
            v.CheckOutcome(
                name="records_routed",
                passed=not routing.any(),
                severity="WARN",
                description="every record has a key and a connection",
                failures=v.failure_summary(
                    pd.DataFrame(
                        {
                            "check": [
                                "null key" if k is None else "unrouted"
                                for k in records.rec_key[routing].tolist()
                            ],
                            "column": ["+".join(key_columns)] * int(routing.sum()),
                            "failure_case": obj_array(
                                [truncate(x) for x in records.rec_raw_conn[routing].tolist()]
                            ),
                            "index": records.src_sorted[records.starts[routing]],
                        }
                    )
                ),
                metadata={"records": records.R, "sent": sent},
            )
        )
        return out
