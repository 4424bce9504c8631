"""``trackstar-dagster pools ...``: the sync's concurrency pools on the Dagster instance in ``$DAGSTER_HOME``.

- ``pools list [--pool P]``: every limited pool, the runs holding or waiting for its slots, and their verdict.
- ``pools free --dead [--pool P] [--stale-seconds S]``: free the slots of runs that are dead (in progress, but
  heartbeat stale, or their process gone on this host: they are marked failed), finished or deleted.
- ``pools free --run-id X``: free one run's slots, whatever its state (a run with no heartbeat you know is dead).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from trackstar_dagster.cli.command import CommandError
from trackstar_dagster.pools import PoolSettings, free_run, judge_run, pool_holders, pools_of


@contextmanager
def open_instance() -> Iterator[dg.DagsterInstance]:
    """The instance configured in $DAGSTER_HOME (its dagster.yaml), as Dagster's own commands open it."""
    try:
        instance = dg.DagsterInstance.get()
    except dg.DagsterError as exc:
        raise CommandError(f"cannot open the Dagster instance: {exc}") from exc
    with instance:
        yield instance


# ---------------------------------------------------------------------------------------------------------
# pools


def add_pools_commands(commands: argparse._SubParsersAction) -> None:
    pools = commands.add_parser(
        "pools",
        help="concurrency pools: who holds their slots, free those of dead runs",
        description="Concurrency pools of the instance in $DAGSTER_HOME.",
    )
    sub = pools.add_subparsers(dest="pools_command", required=True, metavar="{list,free}")

    listing = sub.add_parser("list", help="the runs holding or waiting for each pool's slots, with a verdict")
    _pool_options(listing)
    listing.set_defaults(func=pools_list)

    free = sub.add_parser(
        "free", help="free slots of dead or finished runs (--dead), or of one run (--run-id)"
    )
    which = free.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--dead",
        action="store_true",
        help="runs whose heartbeat is stale or whose process is gone (marked failed), and runs "
        "already finished; runs with no heartbeat are left alone",
    )
    which.add_argument("--run-id", help="free every slot of this run, whatever its state")
    _pool_options(free)
    free.set_defaults(func=pools_free)


def _pool_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pool", action="append", help="only this pool (repeatable); default: all limited pools"
    )
    parser.add_argument(
        "--stale-seconds",
        type=float,
        default=None,
        help="a heartbeat older than this means dead (default: $TRACKSTAR_POOL_STALE_S or 90)",
    )


def pools_list(args: argparse.Namespace) -> int:
    settings = PoolSettings.from_env(stale_s=args.stale_seconds)
    with open_instance() as instance:
        pools = pools_of(instance, args.pool)
        if not pools:
            print("No limited pools in this instance.")
            return 0
        for pool in pools:
            info = instance.event_log_storage.get_concurrency_info(pool)
            holders = pool_holders(instance, pool)
            waiting = sum(len(h.waiting) for h in holders)
            print(
                f"pool {pool}: limit {info.limit}, {len(info.claimed_slots)} slot(s) held, {waiting} step(s) waiting"
            )
            for holder in holders:
                verdict = judge_run(instance, holder.run_id, settings)
                print(f"  run {holder.run_id}  {holder.describe()}  -> {verdict.state}: {verdict.reason}")
    return 0


def pools_free(args: argparse.Namespace) -> int:
    settings = PoolSettings.from_env(stale_s=args.stale_seconds)
    with open_instance() as instance:
        return _free_run_id(instance, args) if args.run_id else _free_dead(instance, args, settings)


def _free_dead(instance: dg.DagsterInstance, args: argparse.Namespace, settings: PoolSettings) -> int:
    freed = 0
    for pool in pools_of(instance, args.pool):
        for holder in pool_holders(instance, pool):
            verdict = judge_run(instance, holder.run_id, settings)
            where = f"pool {pool}: run {holder.run_id} ({holder.describe()})"
            if not verdict.freeable:
                hint = (
                    f"; if you know it is dead: trackstar-dagster pools free --run-id {holder.run_id}"
                    if verdict.state == "unknown"
                    else ""
                )
                print(f"{where} is {verdict.state} ({verdict.reason}): left alone{hint}")
                continue
            free_run(instance, holder, verdict, freed_by="trackstar-dagster pools free --dead")
            freed += 1
            done = "marked it failed and freed its slots" if verdict.state == "dead" else "freed its slots"
            print(f"{where} is {verdict.state} ({verdict.reason}): {done}")
    if not freed:
        print("Nothing to free.")
    return 0


def _free_run_id(instance: dg.DagsterInstance, args: argparse.Namespace) -> int:
    run_id = args.run_id
    pools = [
        p for p in pools_of(instance, args.pool) if any(h.run_id == run_id for h in pool_holders(instance, p))
    ]
    if not pools:
        print(f"Run {run_id} holds no slot{' in ' + ', '.join(args.pool) if args.pool else ''}.")
        return 0
    instance.event_log_storage.free_concurrency_slots_for_run(run_id)
    print(f"Freed the slots of run {run_id} in pool(s) {', '.join(pools)}.")
    run = instance.get_run_by_id(run_id)
    if run is not None and not run.is_finished:
        print(
            f"Run {run_id} is still marked {run.status.value}: if its process is gone, mark it failed in the UI "
            "(Terminate, force)."
        )
    return 0
