""".npy files of the store: written with a running sha256, checked against the manifest."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from sg3probe.store.errors import StoreError

_READ_CHUNK = 1 << 22


class _HashingWriter:
    """A write-only file wrapper that hashes and counts what goes through it."""

    def __init__(self, handle):
        self._handle = handle
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self._handle.write(data)
        self.sha256.update(data)
        size = memoryview(data).nbytes
        self.size += size
        return size


def write_npy(path: Path, array: np.ndarray) -> dict[str, Any]:
    """Write a C-ordered .npy file, fsync it, and return its {'sha256', 'size'} for the manifest."""
    # A C-contiguous input always yields the same header, so equal arrays give equal bytes.
    array = np.ascontiguousarray(array)
    with open(path, "xb") as handle:
        writer = _HashingWriter(handle)
        # Through a non-file object numpy writes in buffered chunks: no full extra copy.
        np.lib.format.write_array(writer, array, allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())
    return {"sha256": writer.sha256.hexdigest(), "size": writer.size}


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def npy_problem(
    path: Path, shape: tuple[int, ...], dtype: np.dtype, record: dict[str, Any], checksum: bool
) -> str | None:
    """Why `path` is not the .npy file the manifest records, or None when it is."""
    try:
        size = path.stat().st_size
        if size != record.get("size"):
            return f"{path.name} has {size} bytes, the manifest records {record.get('size')}"
        with open(path, "rb") as handle:
            header_shape, fortran_order, header_dtype = _read_header(handle)
    except FileNotFoundError:
        return f"{path.name} is missing"
    except (OSError, ValueError, StoreError) as error:
        return f"{path.name} cannot be read ({error})"
    if header_shape != shape or header_dtype != dtype or fortran_order:
        return (
            f"{path.name} holds {header_dtype}{list(header_shape)}, "
            f"the store expects {dtype}{list(shape)}"
        )
    if checksum and file_sha256(path) != record.get("sha256"):
        return f"{path.name} does not match its sha256 checksum"
    return None


def _read_header(handle) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(handle)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(handle)
    raise StoreError(f"unexpected .npy format version {version}")


def open_memmap(path: Path, shape: tuple[int, ...], dtype: np.dtype, shard_name: str) -> np.memmap:
    """Memory-map a shard's .npy read-only, checking it holds what the manifest says."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as error:
        raise StoreError(
            f"shard {shard_name}: {path.name} cannot be read ({error}); "
            "run verify() and fill (or `sg3probe sample` again) to recompute it"
        ) from None
    if array.shape != shape or array.dtype != dtype:
        raise StoreError(
            f"shard {shard_name}: {path.name} holds {array.dtype}{list(array.shape)}, the store "
            f"expects {dtype}{list(shape)}; run verify() and fill to recompute it"
        )
    return array
