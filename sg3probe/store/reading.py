"""Reading a complete store: a lazy [num_samples, ...] view over the shards' memory maps."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from sg3probe.store.store import SampleStore


@dataclass(frozen=True)
class Batch:
    """A block of consecutive samples: their row range, seeds and materialised arrays."""

    start: int  # row of the first sample in the store
    seeds: np.ndarray  # [batch] int64
    arrays: dict[str, np.ndarray]  # name -> [batch, *per-sample shape]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def __len__(self) -> int:
        return len(self.seeds)


class ShardedArray:
    """One stored array as a read-only [num_samples, *shape] array, read shard by shard.

    Indexing (an int, a slice, an int or bool array, or a tuple whose first item is one of
    these) returns a NumPy array holding only the requested rows; nothing else is read.
    `shard(k)` gives the memory map of shard k itself.
    """

    def __init__(self, store: SampleStore, name: str):
        self._store = store
        self.name = name
        spec = store.arrays[name]
        self.dtype = spec.dtype
        self.shape = (len(store), *spec.shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def num_shards(self) -> int:
        return self._store.num_shards

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return (
            f"ShardedArray({self.name!r}, shape={self.shape}, dtype={self.dtype}, "
            f"shards={self.num_shards})"
        )

    def shard(self, shard_id: int) -> np.memmap:
        """The read-only memory map of this array in shard `shard_id` ([shard rows, *shape])."""
        return self._store._memmap(shard_id, self.name)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        array = self[:]
        return array if dtype is None else array.astype(dtype, copy=False)

    def __getitem__(self, key: Any) -> np.ndarray:
        rest: tuple = ()
        if isinstance(key, tuple):
            key, rest = (key[0], key[1:]) if key else (slice(None), ())
        if isinstance(key, (int, np.integer)):
            row = _normalise_row(int(key), len(self))
            shard_id, local = self._locate(row)
            return np.array(self.shard(shard_id)[(local, *rest)])
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            out = self._contiguous(start, stop) if step == 1 else self.take(np.arange(start, stop, step))
        else:
            out = self.take(key)
        return out[(slice(None), *rest)] if rest else out

    def take(self, rows) -> np.ndarray:
        """Rows in the given order (ints, negatives allowed, or a boolean mask of length N)."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            if rows.shape != (len(self),):
                raise IndexError(f"a boolean mask must have shape ({len(self)},), got {rows.shape}")
            rows = np.flatnonzero(rows)
        if rows.dtype.kind not in "iu" and rows.size:
            raise IndexError(f"rows must be integers, got {rows.dtype}")
        rows = rows.astype(np.int64).reshape(-1)
        if rows.size and (rows.min() < -len(self) or rows.max() >= len(self)):
            raise IndexError(f"row out of range for {len(self)} samples")
        rows = np.where(rows < 0, rows + len(self), rows)
        out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        if not len(rows):
            return out
        starts = self._store._shard_starts
        shard_of = np.searchsorted(starts, rows, side="right") - 1
        order = np.argsort(shard_of, kind="stable")
        bounds = np.flatnonzero(np.diff(shard_of[order])) + 1
        for group in np.split(order, bounds):
            shard_id = int(shard_of[group[0]])
            local = rows[group] - starts[shard_id]
            out[group] = self.shard(shard_id)[local]
        return out

    def _contiguous(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((max(stop - start, 0), *self.shape[1:]), dtype=self.dtype)
        if stop <= start:
            return out
        starts = self._store._shard_starts
        first = int(np.searchsorted(starts, start, side="right") - 1)
        last = int(np.searchsorted(starts, stop - 1, side="right") - 1)
        for shard_id in range(first, last + 1):
            shard_start = int(starts[shard_id])
            begin = max(start, shard_start)
            end = min(stop, shard_start + self._store._shard_length(shard_id))
            out[begin - start:end - start] = self.shard(shard_id)[begin - shard_start:end - shard_start]
        return out

    def _locate(self, row: int) -> tuple[int, int]:
        starts = self._store._shard_starts
        shard_id = int(np.searchsorted(starts, row, side="right") - 1)
        return shard_id, row - int(starts[shard_id])


def _normalise_row(row: int, length: int) -> int:
    if not -length <= row < length:
        raise IndexError(f"row {row} out of range for {length} samples")
    return row + length if row < 0 else row
