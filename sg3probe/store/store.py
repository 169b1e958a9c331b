"""SampleStore: a seed-sharded, resumable, memory-mapped folder of per-sample arrays."""
from __future__ import annotations

import copy
import os
import shutil
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sg3probe.store import manifest as mf
from sg3probe.store.errors import StoreError
from sg3probe.store.manifest import ArraySpec
from sg3probe.store.npy import npy_problem, open_memmap, write_npy
from sg3probe.store.reading import Batch, ShardedArray
from sg3probe.store.seeds import as_seed_array, ranges_to_array

# Each open memory map holds a file descriptor and, once read, resident pages; keeping only a
# few open bounds both, whatever the number of shards.
_MAX_OPEN_MAPS = 8


@dataclass
class VerifyReport:
    """What verify() found: shards checked, corrupt ones (now marked missing), what is left."""

    checked: int  # complete shards whose files were checked
    corrupt: dict[str, str] = field(default_factory=dict)  # shard folder name -> why
    missing_shards: list[int] = field(default_factory=list)  # ids still to compute, corrupt included
    removed: list[str] = field(default_factory=list)  # leftovers of interrupted writes, deleted

    @property
    def ok(self) -> bool:
        """True when no complete shard was found corrupt."""
        return not self.corrupt


class SampleStore:
    """A folder of per-sample arrays split into shards of consecutive seeds.

    Create or resume with SampleStore.create(...), open an existing one with SampleStore.open(path).
    Writers call write_shard() for each of missing_shards() (fill() does that loop); readers use
    array(), read() and iter_batches() once the store is complete.
    """

    def __init__(self, path: Path, manifest: dict[str, Any]):
        # Private: use create() or open().
        self.path = Path(path)
        self._manifest = manifest
        self._specs = {name: ArraySpec.from_json(data) for name, data in manifest["arrays"].items()}
        self._seeds = ranges_to_array(manifest["seeds"])
        if len(self._seeds) != manifest["num_samples"]:
            raise StoreError(f"{self.path / mf.MANIFEST_NAME} is damaged (seed count differs)")
        self._shard_starts = np.array([shard["start"] for shard in manifest["shards"]], dtype=np.int64)
        self._memmaps: OrderedDict[tuple[int, str], np.memmap] = OrderedDict()

    # ---- creating and opening -------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        arrays: Mapping[str, ArraySpec | tuple],
        seeds: str | Sequence[int] | np.ndarray,
        shard_size: int,
        metadata: Mapping[str, Any] | None = None,
        *,
        overwrite: bool = False,
    ) -> SampleStore:
        """Create a store, or resume the one at `path` if it was made with the same settings.

        arrays: name -> ArraySpec(per-sample shape, dtype), or a (shape, dtype) pair.
        seeds: '0-99999' / '1,5,7-9' text, or a sorted sequence of distinct seeds.
        metadata: free JSON (model sha256, sampling config...); part of the compatibility check.
        overwrite: delete an existing store at `path` first (never a folder that is not a store).
        """
        path = Path(path)
        specs = mf.normalise_specs(arrays)
        seed_array = as_seed_array(seeds)
        if not _is_int(shard_size) or shard_size < 1:
            raise StoreError(f"shard_size must be a positive integer, got {shard_size!r}")
        requested = mf.new_manifest(specs, seed_array, int(shard_size), mf.normalise_metadata(metadata))
        if path.exists() and not path.is_dir():
            raise StoreError(f"{path} is a file, not a folder; choose another output folder")
        if overwrite:
            _remove_store(path)
        _refuse_foreign_folder(path)
        (path / mf.SHARDS_DIR).mkdir(parents=True, exist_ok=True)
        with mf.manifest_lock(path):
            if not (path / mf.MANIFEST_NAME).exists():
                mf.write_manifest(path, requested)
                return cls(path, requested)
            existing = mf.load_manifest(path)
        differences = mf.describe_differences(existing, requested)
        if differences:
            shown = "; ".join(differences[:3])
            if len(differences) > 3:
                shown += f"; and {len(differences) - 3} more"
            raise StoreError(
                f"{path} holds a sample store made with other settings ({shown}); "
                "use another output folder (--out), or delete this one to sample it again"
            )
        return cls(path, existing)

    @classmethod
    def open(cls, path: str | os.PathLike) -> SampleStore:
        """Open an existing store (complete or not) for reading or for resuming writes."""
        path = Path(path)
        return cls(path, mf.load_manifest(path))

    # ---- what the store holds ---------------------------------------------------------------

    @property
    def arrays(self) -> dict[str, ArraySpec]:
        """Array name -> ArraySpec (per-sample shape and dtype)."""
        return dict(self._specs)

    @property
    def metadata(self) -> dict[str, Any]:
        """The caller's metadata given at creation (a copy)."""
        return copy.deepcopy(self._manifest["metadata"])

    @property
    def seeds(self) -> np.ndarray:
        """The seeds of all samples, in row order ([num_samples] int64)."""
        seeds = self._seeds.view()
        seeds.flags.writeable = False
        return seeds

    @property
    def shard_size(self) -> int:
        return self._manifest["shard_size"]

    @property
    def num_shards(self) -> int:
        return len(self._manifest["shards"])

    def __len__(self) -> int:
        return len(self._seeds)

    def __repr__(self) -> str:
        arrays = ", ".join(f"{name}: {spec.dtype}{list(spec.shape)}" for name, spec in self._specs.items())
        missing = sum(not shard["complete"] for shard in self._manifest["shards"])
        return (
            f"SampleStore('{self.path}', {len(self)} samples, {self.num_shards} shards "
            f"({missing} missing), {arrays})"
        )

    def __getstate__(self) -> dict[str, Any]:
        # Memory maps are per process; a pickled store (e.g. sent to a worker) reopens them.
        state = self.__dict__.copy()
        state["_memmaps"] = OrderedDict()
        return state

    def shard_seeds(self, shard_id: int) -> np.ndarray:
        """The seeds of shard `shard_id`, in row order."""
        shard = self._shard(shard_id)
        return self._seeds[shard["start"]:shard["stop"]].copy()

    def shard_name(self, shard_id: int) -> str:
        """The shard's folder name under shards/: '<first_seed>-<last_seed>'."""
        return self._shard(shard_id)["name"]

    def missing_shards(self) -> list[int]:
        """Ids of the shards not yet complete (re-read from disk, so other writers count)."""
        self._reload()
        return [i for i, shard in enumerate(self._manifest["shards"]) if not shard["complete"]]

    @property
    def is_complete(self) -> bool:
        """True when every shard is complete (as of the last manifest read or write)."""
        return all(shard["complete"] for shard in self._manifest["shards"])

    # ---- writing ------------------------------------------------------------------------------

    def write_shard(self, shard_id: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Write all arrays of one shard atomically and mark it complete in the manifest.

        Each array must have shape [shard rows, *spec shape]; it is cast to the spec's dtype,
        and float values must be finite (before and after the cast).
        """
        shard = self._shard(shard_id)
        rows = shard["stop"] - shard["start"]
        prepared = self._prepare(shard["name"], rows, arrays)
        staging = mf.staging_path(self.path, shard["name"])
        old = None
        try:
            staging.mkdir()
            files = {name: write_npy(staging / f"{name}.npy", array) for name, array in prepared.items()}
            del prepared
            mf.fsync_dir(staging)
            final = self.path / mf.SHARDS_DIR / shard["name"]
            with mf.manifest_lock(self.path):
                manifest = self._load_same_store()
                if final.exists():  # a shard folder the manifest does not vouch for, or a redo
                    old = mf.staging_path(self.path, shard["name"] + "-old")
                    os.replace(final, old)
                os.replace(staging, final)
                mf.fsync_dir(final.parent)
                entry = manifest["shards"][shard_id]
                entry["complete"], entry["files"] = True, files
                mf.write_manifest(self.path, manifest)
                self._manifest = manifest
        finally:
            for leftover in (staging, old):
                if leftover is not None and leftover.exists():
                    shutil.rmtree(leftover)
        self._forget_memmaps(shard_id)

    def _prepare(self, shard_name: str, rows: int, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        given, expected = set(arrays), set(self._specs)
        if given != expected:
            parts = []
            if expected - given:
                parts.append(f"missing {', '.join(sorted(expected - given))}")
            if given - expected:
                parts.append(f"unexpected {', '.join(sorted(map(str, given - expected)))}")
            raise StoreError(
                f"shard {shard_name}: arrays do not match the store ({'; '.join(parts)}); "
                f"the store holds {', '.join(self._specs)}"
            )
        return {
            name: _cast_checked(name, shard_name, arrays[name], rows, spec)
            for name, spec in self._specs.items()
        }

    # ---- checking -----------------------------------------------------------------------------

    def verify(self, checksums: bool = True) -> VerifyReport:
        """Check every complete shard (size, .npy header, and sha256 when `checksums`).

        Corrupt shards are marked missing in the manifest, so that fill() recomputes them;
        shard folders the manifest does not vouch for and staging left by dead processes are
        deleted.
        """
        removed = mf.remove_stale_staging(self.path)
        self._reload()
        problems = {}
        for shard_id, shard in enumerate(self._manifest["shards"]):
            if not shard["complete"]:
                continue
            problem = self._shard_problem(shard, checksums)
            if problem is not None:
                problems[shard_id] = (shard["files"], problem)
        checked = sum(shard["complete"] for shard in self._manifest["shards"])
        with mf.manifest_lock(self.path):
            manifest = self._load_same_store()
            corrupt = {}
            for shard_id, (files, problem) in problems.items():
                entry = manifest["shards"][shard_id]
                if entry["complete"] and entry["files"] == files:  # not rewritten meanwhile
                    entry["complete"], entry["files"] = False, {}
                    corrupt[entry["name"]] = problem
            if corrupt:
                mf.write_manifest(self.path, manifest)
            self._manifest = manifest
            removed += self._remove_unvouched_shard_folders(manifest)
        self._memmaps.clear()
        missing = [i for i, shard in enumerate(manifest["shards"]) if not shard["complete"]]
        return VerifyReport(checked=checked, corrupt=corrupt, missing_shards=missing, removed=removed)

    def _shard_problem(self, shard: dict[str, Any], checksums: bool) -> str | None:
        folder = self.path / mf.SHARDS_DIR / shard["name"]
        if not folder.is_dir():
            return "its folder is missing"
        rows = shard["stop"] - shard["start"]
        for name, spec in self._specs.items():
            record = shard["files"].get(name)
            if record is None:
                return f"the manifest has no checksum for {name}.npy"
            problem = npy_problem(folder / f"{name}.npy", (rows, *spec.shape), spec.dtype, record, checksums)
            if problem is not None:
                return problem
        return None

    def _remove_unvouched_shard_folders(self, manifest: dict[str, Any]) -> list[str]:
        # Called with the lock held: every rename into shards/ happens under it too, so a
        # folder that is not complete in the manifest now is a leftover, not work in progress.
        incomplete = {shard["name"] for shard in manifest["shards"] if not shard["complete"]}
        removed = []
        for name in sorted(incomplete):
            folder = self.path / mf.SHARDS_DIR / name
            if folder.exists():
                shutil.rmtree(folder)
                removed.append(f"{mf.SHARDS_DIR}/{name}")
        return removed

    # ---- reading ------------------------------------------------------------------------------

    def array(self, name: str) -> ShardedArray:
        """A lazy, read-only [num_samples, *shape] view of one array over the memory-mapped shards."""
        self._require_readable(name)
        return ShardedArray(self, name)

    def read(self, name: str, rows: Any = None) -> np.ndarray:
        """Materialise one array, all of it or the given rows (ints, slice or bool mask)."""
        view = self.array(name)
        if rows is None:
            return view[:]
        return view[rows] if isinstance(rows, (slice, int, np.integer)) else view.take(rows)

    def iter_batches(
        self, names: str | Sequence[str] | None = None, batch_size: int = 1024
    ) -> Iterator[Batch]:
        """Stream consecutive batches of samples (all arrays, or `names`), in row order."""
        names = list(self._specs) if names is None else [names] if isinstance(names, str) else list(names)
        if not _is_int(batch_size) or batch_size < 1:
            raise StoreError(f"batch_size must be a positive integer, got {batch_size!r}")
        views = [self.array(name) for name in names]
        for start in range(0, len(self), batch_size):
            stop = min(start + batch_size, len(self))
            yield Batch(
                start=start,
                seeds=self._seeds[start:stop].copy(),
                arrays={view.name: view[start:stop] for view in views},
            )

    def _require_readable(self, name: str) -> None:
        if name not in self._specs:
            raise StoreError(f"the store has no array '{name}'; it holds {', '.join(self._specs)}")
        if not self.is_complete:
            self._reload()
        missing = sum(not shard["complete"] for shard in self._manifest["shards"])
        if missing:
            raise StoreError(
                f"sample store {self.path} is incomplete: {missing} of {self.num_shards} shards "
                "missing; run the same sampling command (or fill()) again to complete it"
            )

    def _memmap(self, shard_id: int, name: str) -> np.memmap:
        key = (shard_id, name)
        if key in self._memmaps:
            self._memmaps.move_to_end(key)
            return self._memmaps[key]
        shard = self._shard(shard_id)
        spec = self._specs[name]
        path = self.path / mf.SHARDS_DIR / shard["name"] / f"{name}.npy"
        array = open_memmap(path, (shard["stop"] - shard["start"], *spec.shape), spec.dtype, shard["name"])
        self._memmaps[key] = array
        while len(self._memmaps) > _MAX_OPEN_MAPS:
            self._memmaps.popitem(last=False)
        return array

    def _forget_memmaps(self, shard_id: int) -> None:
        for key in [key for key in self._memmaps if key[0] == shard_id]:
            del self._memmaps[key]

    # ---- internals ------------------------------------------------------------------------------

    def _shard(self, shard_id: int) -> dict[str, Any]:
        if not _is_int(shard_id) or not 0 <= shard_id < self.num_shards:
            raise StoreError(f"shard id must be an integer in 0..{self.num_shards - 1}, got {shard_id!r}")
        return self._manifest["shards"][int(shard_id)]

    def _shard_length(self, shard_id: int) -> int:
        shard = self._manifest["shards"][shard_id]
        return shard["stop"] - shard["start"]

    def _load_same_store(self) -> dict[str, Any]:
        """The manifest on disk, after checking nobody replaced the store with another one."""
        manifest = mf.load_manifest(self.path)
        if mf.describe_differences(manifest, self._manifest):
            raise StoreError(
                f"the sample store at {self.path} was replaced by one with other settings while "
                "open; open it again"
            )
        return manifest

    def _reload(self) -> None:
        manifest = self._load_same_store()
        for shard_id, (old, new) in enumerate(zip(self._manifest["shards"], manifest["shards"])):
            if old != new:
                self._forget_memmaps(shard_id)
        self._manifest = manifest


def _cast_checked(name: str, shard_name: str, value: Any, rows: int, spec: ArraySpec) -> np.ndarray:
    """Check shape, cast to the spec's dtype, and refuse non-finite floats or values that do not fit."""
    label = f"shard {shard_name}: array '{name}'"
    array = np.asarray(value)
    expected = (rows, *spec.shape)
    if array.shape != expected:
        raise StoreError(f"{label} has shape {list(array.shape)}, the store expects {list(expected)}")
    source, target = array.dtype, spec.dtype
    if source.kind not in "biuf":
        raise StoreError(f"{label} has dtype {source}; the store keeps {target}")
    if target.kind == "f":
        if source.kind == "f":
            bad = int(array.size - np.count_nonzero(np.isfinite(array)))
            if bad:
                raise StoreError(
                    f"{label} has {bad} non-finite values (NaN or inf); the store keeps finite numbers only"
                )
        with np.errstate(over="ignore"):
            result = array.astype(target, copy=False)
        bad = int(result.size - np.count_nonzero(np.isfinite(result)))
        if bad:
            raise StoreError(
                f"{label}: {bad} values overflow {target} (largest {np.finfo(target).max:g}); "
                f"scale them, or store '{name}' as float32"
            )
        return np.ascontiguousarray(result)
    if target.kind in "iu":
        if source.kind not in "biu":
            raise StoreError(
                f"{label} has dtype {source}; the store keeps {target}: round and convert it first"
            )
        if array.size and source.kind != "b":
            info = np.iinfo(target)
            low, high = array.min(), array.max()
            if low < info.min or high > info.max:
                raise StoreError(
                    f"{label} has values {low}..{high}, outside what {target} holds "
                    f"({info.min}..{info.max})"
                )
        return np.ascontiguousarray(array.astype(target, copy=False))
    if source.kind != "b":
        raise StoreError(f"{label} has dtype {source}; the store keeps bool")
    return np.ascontiguousarray(array)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _refuse_foreign_folder(path: Path) -> None:
    """Refuse a non-empty folder without a manifest: it is someone's data, not a store."""
    if not path.is_dir() or (path / mf.MANIFEST_NAME).exists():
        return
    ours = (mf.LOCK_NAME, mf.TMP_DIR, mf.SHARDS_DIR)
    foreign = [entry.name for entry in path.iterdir() if entry.name not in ours]
    shards = path / mf.SHARDS_DIR
    if foreign or (shards.is_dir() and any(shards.iterdir())):
        raise StoreError(
            f"{path} is not empty and holds no {mf.MANIFEST_NAME}, so it is not a sample store; "
            "choose another output folder"
        )


def _remove_store(path: Path) -> None:
    """Delete an existing store for overwrite; refuse to delete a folder that is not a store."""
    if not path.exists():
        return
    _refuse_foreign_folder(path)
    shutil.rmtree(path)
