"""The writer layer: payloads to Trackstar, exactly once, with a durable ledger of what was sent.

Entry points are ``write_payloads`` (sync) and ``awrite_payloads``; ``Ledger`` is where writes and claims
are kept; ``WriteReport`` is what a run did and ``FailurePolicy`` decides when that fails the run.
"""

from .actions import ACTIONS, ActionSpec, spec_for
from .ledger import LEDGER_URL_ENV, Ledger, default_ledger_url
from .loop_thread import write_payloads
from .rebuild import rebuild_ledger
from .reconcile import BODY_CHANGED_MESSAGE
from .report import FAILURE_COLUMNS, RESULT_COLUMNS, STATUSES, FailurePolicy, PolicyOutcome, WriteReport
from .run import awrite_payloads

__all__ = [
    "ACTIONS",
    "BODY_CHANGED_MESSAGE",
    "FAILURE_COLUMNS",
    "LEDGER_URL_ENV",
    "RESULT_COLUMNS",
    "STATUSES",
    "ActionSpec",
    "FailurePolicy",
    "Ledger",
    "PolicyOutcome",
    "WriteReport",
    "awrite_payloads",
    "default_ledger_url",
    "rebuild_ledger",
    "spec_for",
    "write_payloads",
]
