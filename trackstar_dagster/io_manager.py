"""Stores a sync's frames one file per partition, so a single-run backfill over many days works.

Dagster's filesystem IO manager refuses an output that spans several partitions; a sync's steps handle a
whole range of days in one run (``BackfillPolicy.single_run()``). Frames carry a ``partition`` column:
``handle_output`` splits by it, ``load_input`` concatenates the partitions asked for.

A sync's own steps never hold a whole range: they store each chunk as they go (``FrameStore``: a
partition's first chunk is ``<key>.pkl``, the next ones ``<key>.more/<n>.pkl``) and hand on a
``StoredFrames``, which loads one part at a time. An input annotated ``StoredFrames`` gets one; any other
input (a user's asset reading the payloads as a DataFrame) gets the partitions concatenated, as ever.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

PARTITION_COLUMN = "partition"
UNPARTITIONED = "_all"  # the file name of an unpartitioned asset's frame


def _write(path: Path, frame: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    frame.to_pickle(tmp)
    os.replace(tmp, path)


def part_paths(directory: Path, key: str) -> list[Path]:
    """The files of one partition, in order (its first chunk, then the chunks appended to it)."""
    first = directory / f"{key}.pkl"
    if not first.exists():
        return []
    more = directory / f"{key}.more"
    rest = sorted(more.glob("*.pkl"), key=lambda p: int(p.stem)) if more.is_dir() else []
    return [first, *rest]


def read_partition(directory: Path, key: str) -> pd.DataFrame | None:
    """One partition's frame (its chunks concatenated); None when it is not stored."""
    paths = part_paths(directory, key)
    if not paths:
        return None
    frames = [pd.read_pickle(p) for p in paths]
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


@dataclass
class StoredFrames:
    """A stored frame, by partition, not loaded: what a sync's steps hand each other (``parts`` loads one
    chunk at a time; ``frame`` everything, for small ones)."""

    directory: str
    keys: tuple[str, ...]  # the partitions (``("_all",)`` when unpartitioned)
    rows: int = 0  # total rows, when the writer knew it
    partitioned: bool = True

    def parts(self) -> Iterator[tuple[str, pd.DataFrame]]:
        """(partition key, chunk) for every stored chunk, in partition order."""
        directory = Path(self.directory)
        for key in self.keys:
            paths = part_paths(directory, key)
            if not paths:
                raise dg.DagsterInvariantViolationError(
                    f"no stored frame for partition {key} in {directory}: materialize it first"
                )
            for path in paths:
                yield key, pd.read_pickle(path)

    def frame(self) -> pd.DataFrame:
        """Every partition concatenated (the whole range in memory: for small ones, and for reading back)."""
        frames = [chunk for _, chunk in self.parts()]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    # Read as a DataFrame where a DataFrame was returned before (``result.asset_value(...)`` of an in-process
    # run hands back the step's output object): loaded whole, on demand.
    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.frame(), name)

    def __getitem__(self, item: Any) -> Any:
        return self.frame()[item]

    def __len__(self) -> int:
        return len(self.frame())


@dataclass
class FrameStore:
    """Stores one asset's frames chunk by chunk, per partition: the first chunk a run stores for a
    partition replaces what an earlier run left there; the next ones are appended."""

    directory: Path
    keys: tuple[str, ...]
    partitioned: bool = True
    _parts: dict[str, int] = field(default_factory=dict)
    _template: pd.DataFrame | None = None
    rows: int = 0

    def append(self, key: str, frame: pd.DataFrame) -> None:
        n = self._parts.get(key, 0)
        if n == 0:
            shutil.rmtree(self.directory / f"{key}.more", ignore_errors=True)
            _write(self.directory / f"{key}.pkl", frame)
        else:
            _write(self.directory / f"{key}.more" / f"{n}.pkl", frame)
        self._parts[key] = n + 1
        self.rows += len(frame)
        if self._template is None:
            self._template = frame.iloc[0:0]

    def split(self, frame: pd.DataFrame) -> None:
        """Store a chunk that may span partitions (by its ``partition`` column)."""
        if self._template is None:
            self._template = frame.iloc[0:0]
        if not len(frame):
            return
        if not self.partitioned or PARTITION_COLUMN not in frame.columns:
            self.append(self.keys[0], frame)
            return
        for key, part in frame.groupby(PARTITION_COLUMN, sort=False):
            self.append(str(key), part.reset_index(drop=True))

    def finish(self, template: pd.DataFrame | None = None) -> StoredFrames:
        """Every partition of the run stored (an empty frame for one without rows) -> the handle."""
        empty = self._template if self._template is not None else template
        for key in self.keys:
            if key not in self._parts:
                self.append(key, empty if empty is not None else pd.DataFrame())
        return StoredFrames(str(self.directory), self.keys, self.rows, self.partitioned)


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

    _write = staticmethod(_write)

    def store_for(self, instance: dg.DagsterInstance, asset_key: dg.AssetKey, keys: list[str]) -> FrameStore:
        """Where a step stores an asset's frames chunk by chunk (``keys``: the run's partitions, or none)."""
        root = Path(self.base_dir) if self.base_dir else Path(instance.storage_directory()) / "trackstar"
        return FrameStore(root.joinpath(*asset_key.path), tuple(keys) or (UNPARTITIONED,), bool(keys))

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame | StoredFrames) -> None:
        if obj is None or isinstance(obj, StoredFrames):
            return  # already stored, chunk by chunk, by the step
        directory = self._dir(context)
        if not context.has_asset_partitions:
            shutil.rmtree(directory / f"{UNPARTITIONED}.more", ignore_errors=True)
            self._write(directory / f"{UNPARTITIONED}.pkl", obj)
            return
        keys = list(context.asset_partition_keys)
        if PARTITION_COLUMN not in obj.columns:
            if len(keys) != 1:
                raise dg.DagsterInvariantViolationError(
                    f"a frame for {len(keys)} partitions needs a {PARTITION_COLUMN!r} column to be split"
                )
            shutil.rmtree(directory / f"{keys[0]}.more", ignore_errors=True)
            self._write(directory / f"{keys[0]}.pkl", obj)
            return
        groups = dict(tuple(obj.groupby(PARTITION_COLUMN, sort=False)))
        for key in keys:
            part = groups.get(key)
            shutil.rmtree(directory / f"{key}.more", ignore_errors=True)
            self._write(directory / f"{key}.pkl", part if part is not None else obj.iloc[0:0])

    def load_input(self, context: dg.InputContext) -> pd.DataFrame | StoredFrames:
        directory = self._dir(context)
        partitioned = context.has_asset_partitions
        keys = tuple(context.asset_partition_keys) if partitioned else (UNPARTITIONED,)
        if not partitioned and not (directory / f"{UNPARTITIONED}.pkl").exists():
            raise dg.DagsterInvariantViolationError(
                f"{context.asset_key.to_user_string()} has no stored frame: materialize it first"
            )
        try:
            wanted = context.dagster_type.typing_type
        except dg.DagsterInvariantViolationError:  # a context built by hand, without a type
            wanted = None
        if isinstance(wanted, type) and issubclass(wanted, StoredFrames):
            missing = [k for k in keys if not part_paths(directory, k)]
            if missing:
                raise dg.DagsterInvariantViolationError(
                    f"{context.asset_key.to_user_string()} has no stored frame for partition {missing[0]}: "
                    f"materialize it first"
                )
            return StoredFrames(str(directory), keys, partitioned=partitioned)
        frames = []
        for key in keys:
            frame = read_partition(directory, key)
            if frame is None:
                raise dg.DagsterInvariantViolationError(
                    f"{context.asset_key.to_user_string()} has no stored frame for partition {key}: materialize it first"
                )
            frames.append(frame)
        if not partitioned:
            return frames[0]
        return pd.concat(frames, ignore_index=True)


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
    keys = sorted(p.stem for p in directory.glob("*.pkl")) if partitions is None else partitions
    frames = [f for f in (read_partition(directory, k) for k in keys) if f is not None]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
