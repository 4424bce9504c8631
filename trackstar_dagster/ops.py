"""``write_orders``: the write step as a plain op, for jobs that build their own payloads frame."""

# no `from __future__ import annotations`: Dagster reads the `config: WriteConfig` annotation at decoration time
import dagster as dg
import pandas as pd

from trackstar_dagster.write_step import WriteConfig, run_writes


@dg.op(
    name="write_orders",
    ins={"payloads": dg.In(pd.DataFrame)},
    out=dg.Out(pd.DataFrame),
    required_resource_keys={"trackstar"},
    tags={"kind": "trackstar"},
)
def write_orders(context: dg.OpExecutionContext, config: WriteConfig, payloads: pd.DataFrame) -> pd.DataFrame:
    """Write a payloads frame (from ``build_payloads``) to Trackstar: each record exactly once, all accounted for."""
    results, metadata = run_writes(
        context,
        context.resources.trackstar,
        payloads,
        dry_run=config.dry_run,
        mode=config.mode_or("create_only"),
        max_failed_share=0.0,
        namespace=config.namespace,
        preview_limit=config.preview_limit,
    )
    context.add_output_metadata(metadata)
    return results
