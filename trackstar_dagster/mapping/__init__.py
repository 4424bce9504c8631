"""Warehouse rows -> Trackstar write bodies (mapping, coercion, validation, rejects). Entry point: ``build_payloads``."""

from trackstar_dagster.mapping.build import PAYLOAD_COLUMNS, REJECT_COLUMNS, build_payloads
from trackstar_dagster.mapping.config import MappingConfig, PayloadBatch, Target
from trackstar_dagster.mapping.previews import dry_run_report
from trackstar_dagster.mapping.suggest import suggest_mapping
from trackstar_dagster.mapping.suggest_proposal import DryRun, MappingSuggestion

__all__ = [
    "PAYLOAD_COLUMNS",
    "REJECT_COLUMNS",
    "DryRun",
    "MappingConfig",
    "MappingSuggestion",
    "PayloadBatch",
    "Target",
    "build_payloads",
    "dry_run_report",
    "suggest_mapping",
]
