"""The reject list of one ``build_payloads`` call, and the check outcomes made from its failures.

Why a module of its own: every stage of the build (routing, columns, pandera, body validation) refuses
records the same way; this base class of ``_Build`` holds that bookkeeping and turns it into the
``rejects`` frame and the ``CheckOutcome`` list, so the stages only say what failed and why.

What a reject shows: the source cell as it was (``"NULL"``, ``" 0 "``, ``1e+19``), as text (``_truncate``:
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
from trackstar_dagster.mapping.coercion import obj_array
from trackstar_dagster.mapping.previews import mask_value

VALUE_MAX = 80


def _truncate(value: Any) -> str | None:
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
    return obj_array([mask_value(str(c), x) if str(c) in personal else x
                      for c, x in zip(columns, cases, strict=True)])


class _Rejects:
    """Rejects and failure cases of one build (state set up by ``_Build``: records, sorted rows, groups)."""

    # -- rejects ----------------------------------------------------------------------------------------

    def _reject(self, rec: int, fld: str, reason: str, value: Any, coerced: bool = False) -> None:
        if coerced:
            self.coerce_bad.add((int(rec), fld))
        self.rej_rec.append(int(rec))
        self.rej_field.append(fld)
        self.rej_reason.append(reason)
        self.rej_value.append(value)

    def _record_failures(self, check: str, recs: np.ndarray, fld: str, reason: str | list[str],
                         values: np.ndarray | list[Any]) -> None:
        """Reject records in bulk and keep the failure cases for the check outcome."""
        if not len(recs):
            return
        reasons = [reason] * len(recs) if isinstance(reason, str) else reason
        vals = list(values)
        for r, why, val in zip(recs.tolist(), reasons, vals, strict=True):
            self._reject(r, fld, why, val, coerced=check == "coercion")
        src = self.src_sorted[self.starts[recs]]
        self.failures.setdefault(check, []).append(pd.DataFrame({
            "check": reasons if not isinstance(reason, str) else [reason] * len(recs),
            "column": [fld] * len(recs),
            "failure_case": obj_array([_truncate(x) for x in vals]),
            "index": src,
        }))

    def _row_failures(self, check: str, rows: np.ndarray, fld: str, reasons: list[str],
                      values: list[Any]) -> None:
        """Reject the records of failing sorted rows (one reject per record and reason)."""
        recs = self.rec_sorted[rows]
        src = self.src_sorted[rows]
        for r, why, val in zip(recs.tolist(), reasons, values, strict=True):
            self._reject(r, fld, why, val, coerced=check == "coercion")
        self.failures.setdefault(check, []).append(pd.DataFrame({
            "check": reasons, "column": [fld] * len(rows),
            "failure_case": obj_array([_truncate(x) for x in values]), "index": src,
        }))

    def _rejects_frame(self, src_list: list[int]) -> pd.DataFrame:
        if not self.rej_rec:
            return pd.DataFrame({
                "key": pd.Series([], dtype="str"), "connection": pd.Series([], dtype="str"),
                "source_rows": pd.Series([], dtype=object), "field": pd.Series([], dtype="str"),
                "reason": pd.Series([], dtype="str"), "value": pd.Series([], dtype="str")})
        frame = pd.DataFrame({"rec": self.rej_rec, "field": self.rej_field, "reason": self.rej_reason,
                              "value": [_truncate(x) for x in self.rej_value]})
        frame = frame.drop_duplicates(["rec", "field", "reason"]).sort_values("rec", kind="stable")
        recs = frame["rec"].to_numpy()
        conn = self.rec_conn[recs]
        return pd.DataFrame({
            "key": pd.Series(self.rec_key[recs], dtype="str"),
            "connection": pd.Series(conn, dtype="str"),
            "source_rows": pd.Series([src_list[s:e] for s, e in zip(self.starts[recs].tolist(),
                                                                    self.ends[recs].tolist(), strict=True)],
                                     dtype=object),
            "field": pd.Series(frame["field"].to_numpy(), dtype="str"),
            "reason": pd.Series(frame["reason"].to_numpy(), dtype="str"),
            "value": pd.Series(frame["value"].to_numpy(), dtype="str"),
        })

    def _checks(self, sent: int) -> list[v.CheckOutcome]:
        out = []
        descriptions = {
            "coercion": "every mapped value converts to its field's JSON type",
            "conflicting header values": "rows of one record agree on every header field",
            "base schema rows": "Base Schema rules on the flat rows (quantity >= 1, prices >= 0, key not null)",
            "bodies": "every finished body passes the integration's write-info schema",
        }
        names = ["coercion", "conflicting header values", "base schema rows",
                 *[f"{g.integration_name} rows" for g in self.groups], "bodies"]
        for name in dict.fromkeys(names):
            frames = self.failures.get(name, [])
            fc = pd.concat(frames, ignore_index=True) if frames else v.empty_failures()
            if len(fc):  # outcomes become asset-check metadata, kept forever: personal values masked
                fc["failure_case"] = _masked(fc["column"].tolist(), fc["failure_case"].tolist())
            out.append(v.CheckOutcome(
                name=name.replace(" ", "_"), passed=not len(fc), severity="WARN",
                description=descriptions.get(name, f"{name.split(' ')[0]} write-info rules on the flat rows"),
                failures=v.failure_summary(fc), metadata={"failing_values": len(fc)}))
        routing = np.equal(self.rec_key, None) | (self.rec_group < 0)
        out.append(v.CheckOutcome(
            name="records_routed", passed=not routing.any(), severity="WARN",
            description="every record has a key and a connection",
            failures=v.failure_summary(pd.DataFrame({
                "check": ["null key" if k is None else "unrouted" for k in self.rec_key[routing].tolist()],
                "column": ["+".join(self.config.key_columns)] * int(routing.sum()),
                "failure_case": obj_array([_truncate(x) for x in self.rec_raw_conn[routing].tolist()]),
                "index": self.src_sorted[self.starts[routing]]})),
            metadata={"records": self.R, "sent": sent}))
        return out
