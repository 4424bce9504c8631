"""Stores a sync's frames one file per partition, so a single-run backfill over many days works.

Dagster's filesystem IO manager refuses an output that spans several partitions; a sync's steps handle a
whole range of days in one run (``BackfillPolicy.single_run()``). Frames carry a ``partition`` column:
``handle_output`` splits by it, ``load_input`` concatenates the partitions asked for.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pandas as pd

PARTITION_COLUMN = "partition"


class TrackstarFrameIOManager(dg.ConfigurableIOManager):
    """Pickled pandas frames under ``base_dir`` (default ``$DAGSTER_HOME/storage/trackstar``), per partition."""

    base_dir: str | None = None

    def _root(self, context: dg.InputContext | dg.OutputContext) -> Path:
        if self.base_dir:
            return Path(self.base_dir)
        home = os.environ.get("DAGSTER_HOME")
        try:
            return Path(context.instance.storage_directory()) / "trackstar"  # type: ignore[union-attr]
        except Exception:
            return (Path(home) if home else Path.home() / ".trackstar_dagster") / "storage" / "trackstar"

    def _dir(self, context: dg.InputContext | dg.OutputContext) -> Path:
        return self._root(context).joinpath(*context.asset_key.path)

    @staticmethod
    def _write(path: Path, frame: pd.DataFrame) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        frame.to_pickle(tmp)
        os.replace(tmp, path)

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        if obj is None:
            return
        directory = self._dir(context)
        if not context.has_asset_partitions:
            self._write(directory / "_all.pkl", obj)
            return
        keys = list(context.asset_partition_keys)
        if PARTITION_COLUMN not in obj.columns:
            if len(keys) != 1:
                raise dg.DagsterInvariantViolationError(
                    f"a frame for {len(keys)} partitions needs a {PARTITION_COLUMN!r} column to be split"
                )
            self._write(directory / f"{keys[0]}.pkl", obj)
            return
        groups = dict(tuple(obj.groupby(PARTITION_COLUMN, sort=False)))
        for key in keys:
            part = groups.get(key)
            self._write(directory / f"{key}.pkl", part if part is not None else obj.iloc[0:0])

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        directory = self._dir(context)
        if not context.has_asset_partitions:
            return pd.read_pickle(directory / "_all.pkl")
        frames = []
        for key in context.asset_partition_keys:
            path = directory / f"{key}.pkl"
            if not path.exists():
                raise dg.DagsterInvariantViolationError(
                    f"{context.asset_key.to_user_string()} has no stored frame for partition {key}: materialize it first"
                )
            frames.append(pd.read_pickle(path))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_frames(
    asset_key: dg.AssetKey,
    partitions: list[str] | None = None,
    *,
    base_dir: str | None = None,
    instance: dg.DagsterInstance | None = None,
) -> pd.DataFrame:
    """A sync's stored frames (payloads, rejects, write_results) read back without building paths by hand:
    every partition stored (or those named), concatenated; an empty frame when none is stored."""
    if base_dir:
        root = Path(base_dir)
    else:
        instance = instance or dg.DagsterInstance.get()
        root = Path(instance.storage_directory()) / "trackstar"
    directory = root.joinpath(*asset_key.path)
    if not directory.exists():
        return pd.DataFrame()
    paths = (
        sorted(directory.glob("*.pkl"))
        if partitions is None
        else [directory / f"{p}.pkl" for p in partitions]
    )
    frames = [pd.read_pickle(p) for p in paths if p.exists()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
