"""The store's manifest.json and the file-system steps that keep it consistent.

Layout of a store folder:
    manifest.json                     the store's truth: settings, shard table, completion, checksums
    shards/<first_seed>-<last_seed>/  one folder per shard, one <array>.npy per stored array
    .tmp/                             staging folders and files, renamed into place when complete
    .lock                             serialises manifest updates between processes (flock)

A shard counts only when its manifest entry says complete. Writers stage a shard in .tmp/,
fsync it, and then, holding the lock, rename it into shards/ and rewrite the manifest (temp file
+ os.replace). A crash leaves at worst a staged folder or a shard folder the manifest does not
vouch for; both are recomputed.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sg3probe.store.errors import StoreError
from sg3probe.store.seeds import array_to_ranges, format_seeds, ranges_to_array

try:  # POSIX; elsewhere a store has one writer process at a time
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

FORMAT_VERSION = 1
STORE_KIND = "sg3probe-sample-store"
MANIFEST_NAME = "manifest.json"
SHARDS_DIR = "shards"
TMP_DIR = ".tmp"
LOCK_NAME = ".lock"

_ARRAY_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_COMPARED_KEYS = ("format_version", "arrays", "seeds", "shard_size", "metadata")


@dataclass(frozen=True)
class ArraySpec:
    """What one stored array holds per sample: its shape (without the sample axis) and dtype."""

    shape: tuple[int, ...]
    dtype: np.dtype

    def __post_init__(self):
        shape = (self.shape,) if isinstance(self.shape, (int, np.integer)) else tuple(self.shape)
        if not all(isinstance(size, (int, np.integer)) and size > 0 for size in shape):
            raise StoreError(f"array shape must be positive integers, got {self.shape!r}")
        try:
            dtype = np.dtype(self.dtype)
        except TypeError as error:
            raise StoreError(f"'{self.dtype}' is not a NumPy dtype ({error})") from None
        if dtype.kind not in "biuf" or dtype.fields is not None:
            raise StoreError(
                f"the store keeps bool, integer and float arrays, not {dtype}; "
                "use e.g. float32, float16, int64 or uint8"
            )
        object.__setattr__(self, "shape", tuple(int(size) for size in shape))
        object.__setattr__(self, "dtype", dtype.newbyteorder("="))

    def to_json(self) -> dict[str, Any]:
        """The spec as it is written in manifest.json."""
        return {"shape": list(self.shape), "dtype": self.dtype.name}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ArraySpec:
        """Read a spec back from manifest.json."""
        return cls(tuple(data["shape"]), data["dtype"])


def normalise_specs(arrays: Mapping[str, ArraySpec | tuple]) -> dict[str, ArraySpec]:
    """Validate array names (they become file names) and turn (shape, dtype) pairs into specs."""
    if not isinstance(arrays, Mapping) or not arrays:
        raise StoreError("a store needs at least one array: arrays={'ws': ArraySpec((16, 512), 'float32')}")
    specs = {}
    for name, spec in arrays.items():
        if not isinstance(name, str) or not _ARRAY_NAME.match(name):
            raise StoreError(
                f"array name {name!r} cannot be a file name; use letters, digits, '_', '-' and '.'"
            )
        specs[name] = spec if isinstance(spec, ArraySpec) else ArraySpec(*spec)
    return specs


def normalise_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return metadata as plain JSON (tuples become lists), or explain what is not JSON."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise StoreError(f"store metadata must be a dict, got {type(metadata).__name__}")
    try:
        return json.loads(json.dumps(dict(metadata), allow_nan=False))
    except (TypeError, ValueError) as error:
        raise StoreError(
            f"store metadata must be JSON (str, int, finite float, bool, None, list, dict): {error}"
        ) from None


def new_manifest(
    specs: Mapping[str, ArraySpec], seeds: np.ndarray, shard_size: int, metadata: dict[str, Any]
) -> dict[str, Any]:
    """Build the manifest of an empty store: settings plus the table of (all incomplete) shards."""
    shards = []
    for start in range(0, len(seeds), shard_size):
        stop = min(start + shard_size, len(seeds))
        first, last = int(seeds[start]), int(seeds[stop - 1])
        shards.append({
            "name": f"{first}-{last}", "start": start, "stop": stop,
            "first_seed": first, "last_seed": last, "complete": False, "files": {},
        })
    return {
        "kind": STORE_KIND,
        "format_version": FORMAT_VERSION,
        "metadata": metadata,
        "arrays": {name: spec.to_json() for name, spec in specs.items()},
        "num_samples": int(len(seeds)),
        "seeds": array_to_ranges(seeds),
        "shard_size": int(shard_size),
        "shards": shards,
    }


def load_manifest(path: Path) -> dict[str, Any]:
    """Read and sanity-check <path>/manifest.json."""
    manifest_path = path / MANIFEST_NAME
    try:
        with open(manifest_path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except FileNotFoundError:
        raise StoreError(
            f"no sample store at {path} (no {MANIFEST_NAME}); create one with `sg3probe sample`"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise StoreError(f"{manifest_path} is damaged ({error}); delete the store and sample again") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != STORE_KIND:
        raise StoreError(f"{manifest_path} is not the manifest of an sg3probe sample store")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise StoreError(
            f"{path} uses store format {version}, newer than this sg3probe reads "
            f"({FORMAT_VERSION}); upgrade sg3probe"
        )
    missing = [key for key in (*_COMPARED_KEYS, "num_samples", "shards") if key not in manifest]
    if missing:
        raise StoreError(
            f"{manifest_path} is damaged (no {', '.join(missing)}); delete the store and sample again"
        )
    return manifest


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Replace manifest.json atomically: write a temp file, fsync it, os.replace it into place."""
    staged = staging_path(path, MANIFEST_NAME)
    with open(staged, "w", encoding="utf-8") as handle:
        handle.write(_dumps(manifest))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(staged, path / MANIFEST_NAME)
    fsync_dir(path)


def _dumps(manifest: dict[str, Any]) -> str:
    """JSON with one line per setting and one line per shard: readable, and diffs line by line."""
    lines = []
    for key, value in manifest.items():
        if key == "shards":
            rows = ",\n".join(f"  {json.dumps(shard, allow_nan=False)}" for shard in value)
            lines.append(f' "shards": [\n{rows}\n ]')
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value, allow_nan=False)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


@contextlib.contextmanager
def manifest_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the store, so read-modify-write of the manifest is not lost."""
    with open(path / LOCK_NAME, "a+b") as handle:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable (POSIX only; Windows has no directory fsync)."""
    if not hasattr(os, "O_DIRECTORY"):  # pragma: no cover - Windows
        return
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _host() -> str:
    return socket.gethostname().replace(".", "_") or "host"


def staging_path(path: Path, label: str) -> Path:
    """A fresh name in <store>/.tmp/ that records host and pid, so stale ones can be cleaned."""
    (path / TMP_DIR).mkdir(exist_ok=True)
    return path / TMP_DIR / f"{label}.{_host()}.{os.getpid()}.{secrets.token_hex(4)}"


def remove_stale_staging(path: Path) -> list[str]:
    """Delete staged files left by dead processes of this host; return their names."""
    tmp_root = path / TMP_DIR
    if not tmp_root.is_dir() or os.name != "posix":
        return []
    removed = []
    for entry in tmp_root.iterdir():
        parts = entry.name.rsplit(".", 3)
        if len(parts) != 4 or parts[1] != _host() or not parts[2].isdigit():
            continue
        if _pid_alive(int(parts[2])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
        removed.append(entry.name)
    return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def describe_differences(existing: Mapping[str, Any], requested: Mapping[str, Any]) -> list[str]:
    """Name the settings in which an existing manifest differs from the one requested."""
    differences = []
    if existing["format_version"] != requested["format_version"]:
        differences.append(
            f"store format {existing['format_version']} on disk vs {requested['format_version']}"
        )
    old_arrays, new_arrays = existing["arrays"], requested["arrays"]
    for name in sorted(set(old_arrays) | set(new_arrays)):
        if old_arrays.get(name) != new_arrays.get(name):
            differences.append(
                f"array '{name}': {_describe_array(old_arrays.get(name))} on disk vs "
                f"{_describe_array(new_arrays.get(name))} requested"
            )
    if existing["seeds"] != requested["seeds"]:
        differences.append(
            f"seeds: {_describe_seeds(existing['seeds'])} on disk vs "
            f"{_describe_seeds(requested['seeds'])} requested"
        )
    if existing["shard_size"] != requested["shard_size"]:
        differences.append(
            f"shard size: {existing['shard_size']} on disk vs {requested['shard_size']} requested"
        )
    old_meta, new_meta = _flatten(existing["metadata"]), _flatten(requested["metadata"])
    for key in sorted(set(old_meta) | set(new_meta)):
        if old_meta.get(key, _ABSENT) != new_meta.get(key, _ABSENT):
            differences.append(
                f"metadata {key}: {_short(old_meta.get(key, _ABSENT))} on disk vs "
                f"{_short(new_meta.get(key, _ABSENT))} requested"
            )
    return differences


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


_ABSENT = _Absent()


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists stay leaves."""
    if isinstance(value, dict) and value:
        flat = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix or "(all)": value}


def _short(value: Any, width: int = 40) -> str:
    text = repr(value) if isinstance(value, _Absent) else json.dumps(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _describe_array(data: Mapping[str, Any] | None) -> str:
    if data is None:
        return "(absent)"
    return f"{data['dtype']}{list(data['shape'])}"


def _describe_seeds(ranges: Sequence[Sequence[int]]) -> str:
    return f"{format_seeds(ranges_to_array(ranges), limit=4)} ({sum(b - a + 1 for a, b in ranges)} seeds)"
