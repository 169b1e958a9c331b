"""Finished steps of an analysis, kept in its work folder so that a rerun after an interrupt skips them.

An analyzer that works in long steps (one per model, say) saves each step's rows and arrays when
the step ends and, before starting it, asks whether a step of that name was saved under the same
key: its config, the samples (`samples_identity`: the store's settings and model hash, or the
arrays themselves), the run seed, the scorer and the sg3probe version:

    steps = ctx.saved_steps(cfg, samples["aligned"])
    done = steps.get("aligned")
    if done is None:
        done = StepRecord(tables={"edits": rows}, arrays={"normal": normal})   # the work
        steps.put("aligned", done)

A step is <name>.npz (the arrays, read without pickle) and <name>.json (the rows and the key),
written in that order, so a step cut off while saving is absent, not half there. A step saved under
another key is computed again and overwritten.
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

STEP_FORMAT = 1


@dataclass
class StepRecord:
    """What one finished step produced: table rows by table name, and named arrays."""

    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


class SavedSteps:
    """The saved steps of one analysis in `folder`, valid for one `key` (any JSON-able value)."""

    def __init__(self, folder: str | Path, key: Any) -> None:
        self.folder = Path(folder)
        self.key = _plain(key)

    def get(self, name: str) -> StepRecord | None:
        """The step saved as `name` under this key, or None (never saved, saved under another key, or unreadable)."""
        index, arrays = self._paths(name)
        try:
            saved = json.loads(index.read_text(encoding="utf-8"))
            if saved.get("format") != STEP_FORMAT or saved.get("key") != self.key:
                return None
            with np.load(arrays, allow_pickle=False) as loaded:
                values = {saved_name: loaded[stored] for saved_name, stored in saved["arrays"].items()}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None
        return StepRecord(tables=saved["tables"], arrays=values)

    def put(self, name: str, record: StepRecord) -> None:
        """Save a finished step (replacing one of the same name)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        index, arrays = self._paths(name)
        index.unlink(missing_ok=True)  # the step is absent until both files are complete
        stored = {saved_name: f"a{number}" for number, saved_name in enumerate(record.arrays)}
        temporary = arrays.with_name(arrays.name + ".partial")
        with open(temporary, "wb") as handle:
            np.savez(handle, **{stored[n]: np.asarray(v) for n, v in record.arrays.items()})
        os.replace(temporary, arrays)
        text = json.dumps({"format": STEP_FORMAT, "key": self.key, "tables": _plain(record.tables),
                           "arrays": stored})
        temporary = index.with_name(index.name + ".partial")
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, index)

    def _paths(self, name: str) -> tuple[Path, Path]:
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        return self.folder / f"{stem}.json", self.folder / f"{stem}.npz"


def samples_identity(samples: Any) -> dict[str, Any]:
    """What a step computed from `samples` depends on: a store's settings, model hash and seeds, or (samples
    in memory) a digest of every array."""
    store = getattr(samples, "store", None)
    if store is not None:
        seeds = np.ascontiguousarray(store.seeds, dtype=np.int64)
        return {"store": store.metadata, "seeds": hashlib.sha256(seeds.tobytes()).hexdigest()}
    digest = hashlib.sha256()
    _feed(digest, {name: samples[name] for name in samples.keys()})
    return {"arrays": digest.hexdigest()}


def _feed(digest, value: Any) -> None:
    if isinstance(value, Mapping):
        for name in sorted(value):
            digest.update(str(name).encode())
            _feed(digest, value[name])
    else:
        array = np.ascontiguousarray(value)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())


def _plain(value: Any) -> Any:
    """`value` as JSON reads it back: numpy scalars as Python numbers, tuples as lists, keys as text."""
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} cannot be saved in a step record")
