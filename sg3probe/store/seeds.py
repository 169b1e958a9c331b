"""Seed lists: parse '0-99999' or '1,5,7-9', keep them as compact ranges, write them back.

A seed is what np.random.RandomState accepts, an integer in [0, 2**32); the store keeps the
seeds of its samples sorted and distinct, so that a seed's row is found by binary search and a
shard is a contiguous block of that sorted list.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from sg3probe.errors import ConfigError

MAX_SEED = 2**32 - 1

_EXAMPLES = "write seeds as '0-99999' or '1,5,7-9'"
_ITEM = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_seed_ranges(text: str) -> list[tuple[int, int]]:
    """Parse a seed list into sorted, non-overlapping inclusive (first, last) ranges."""
    if not isinstance(text, str):
        raise ConfigError(f"seeds must be text such as '0-99999', got {type(text).__name__}")
    if not text.strip():
        raise ConfigError(f"no seeds given; {_EXAMPLES}")
    ranges = []
    for item in text.split(","):
        match = _ITEM.match(item)
        if match is None:
            what = "an empty item" if not item.strip() else f"'{item.strip()}'"
            raise ConfigError(
                f"seeds '{text}': {what} is not a seed or a range of non-negative integers; "
                f"{_EXAMPLES}"
            )
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            raise ConfigError(
                f"seeds '{text}': the range {first}-{last} goes downwards; write it as {last}-{first}"
            )
        if last > MAX_SEED:
            raise ConfigError(
                f"seeds '{text}': seed {last} is too large; seeds go from 0 to {MAX_SEED} "
                "(what np.random.RandomState accepts)"
            )
        ranges.append((first, last))
    ranges.sort()
    for (_, previous_last), (first, last) in zip(ranges, ranges[1:]):
        if first <= previous_last:
            raise ConfigError(
                f"seeds '{text}': seed {first} is given twice (overlapping items); "
                "list each seed once"
            )
    return ranges


def parse_seeds(text: str) -> list[int]:
    """Parse '0-99999' or '1,5,7-9' (inclusive ranges, any order) into sorted, distinct seeds."""
    return [seed for first, last in parse_seed_ranges(text) for seed in range(first, last + 1)]


def as_seed_array(seeds: str | Sequence[int] | np.ndarray) -> np.ndarray:
    """Turn text or a sequence of seeds into a validated int64 array, strictly increasing."""
    if isinstance(seeds, str):
        return ranges_to_array(parse_seed_ranges(seeds))
    array = np.asarray(seeds)
    if array.ndim != 1 or array.size == 0:
        raise ConfigError(f"seeds must be a non-empty 1-D list of integers, got shape {array.shape}")
    if array.dtype.kind not in "iu":
        raise ConfigError(f"seeds must be integers, got {array.dtype}")
    array = array.astype(np.int64)
    if array.min() < 0 or array.max() > MAX_SEED:
        raise ConfigError(f"seeds must lie in 0..{MAX_SEED}, got {array.min()}..{array.max()}")
    steps = np.diff(array)
    if (steps <= 0).any():
        at = int(np.flatnonzero(steps <= 0)[0])
        raise ConfigError(
            f"seeds must be sorted and distinct: seed {array[at + 1]} comes after {array[at]}; "
            "sort them (the store's rows follow the seed order)"
        )
    return array


def array_to_ranges(seeds: np.ndarray) -> list[list[int]]:
    """Compress a strictly increasing seed array into inclusive [first, last] ranges."""
    seeds = np.asarray(seeds, dtype=np.int64)
    breaks = np.flatnonzero(np.diff(seeds) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [len(seeds)]]) - 1
    return [[int(seeds[a]), int(seeds[b])] for a, b in zip(starts, stops)]


def ranges_to_array(ranges: Sequence[Sequence[int]]) -> np.ndarray:
    """Expand inclusive [first, last] ranges into an int64 seed array."""
    return np.concatenate(
        [np.arange(first, last + 1, dtype=np.int64) for first, last in ranges]
    )


def format_seeds(seeds: str | Sequence[int] | np.ndarray, limit: int | None = None) -> str:
    """Write seeds back as '1,5,7-9' text; with `limit`, keep that many items and elide ('...')."""
    ranges = array_to_ranges(as_seed_array(seeds))
    items = [str(first) if first == last else f"{first}-{last}" for first, last in ranges]
    if limit is not None and len(items) > limit:
        items = items[: limit - 1] + ["...", items[-1]]
    return ",".join(items)
