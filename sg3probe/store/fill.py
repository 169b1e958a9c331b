"""Filling a store: compute the missing shards, one seed block at a time, resumably.

compute_fn(seeds) -> {array name: [len(seeds), *shape]} must depend on the seeds only (one RNG
per seed, as NVIDIA does), so that a shard computed now, after a crash, or on another machine
holds the same bytes.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from sg3probe.store.store import SampleStore

ComputeFn = Callable[[list[int]], Mapping[str, np.ndarray]]


@dataclass
class FillResult:
    """What fill() did."""

    shards_written: int
    samples_written: int
    shards_already_complete: int
    corrupt: dict[str, str] = field(default_factory=dict)  # found by the initial check, recomputed


# (rank, world size) variables of the launchers, in the order they are looked for.
LAUNCHER_VARIABLES = (("RANK", "WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS"))


def rank_and_world(environ: Mapping[str, str] | None = None) -> tuple[int, int]:
    """This process's (rank, world size) as its launcher set them: torchrun's RANK and WORLD_SIZE, else SLURM's
    SLURM_PROCID and SLURM_NTASKS, else (0, 1): one process does everything."""
    environ = os.environ if environ is None else environ
    for rank_name, world_name in LAUNCHER_VARIABLES:
        if rank_name in environ and world_name in environ:
            try:
                rank, world = int(environ[rank_name]), int(environ[world_name])
            except ValueError:
                raise ValueError(f"{rank_name}={environ[rank_name]!r} and {world_name}={environ[world_name]!r} "
                                 "must be whole numbers") from None
            check_share(rank, world)
            return rank, world
    return 0, 1


def check_share(rank: int, world: int) -> None:
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank {rank} of world size {world}: the world size must be >= 1 and the rank 0 to "
                         f"{max(world, 1) - 1}")


def shard_share(num_shards: int, rank: int, world: int) -> list[int]:
    """The shards process `rank` of `world` fills: every world-th one from `rank`, so the processes split a
    store evenly without talking to each other (the manifest's lock orders their writes)."""
    check_share(rank, world)
    return list(range(rank, num_shards, world))


def run_shard(store: SampleStore, shard_id: int, compute_fn: ComputeFn) -> bool:
    """Compute and write one shard unless it is complete; returns whether it wrote. Idempotent."""
    if shard_id not in store.missing_shards():
        return False
    store.write_shard(shard_id, compute_fn(store.shard_seeds(shard_id).tolist()))
    return True


def fill(
    store: SampleStore,
    compute_fn: ComputeFn,
    *,
    shard_ids: Iterable[int] | None = None,
    progress: bool = True,
    verify_checksums: bool = False,
) -> FillResult:
    """Compute every missing shard (or those of `shard_ids` that are missing) and write it.

    First runs store.verify(checksums=verify_checksums), so shards with missing, truncated or
    mismatched files (and with verify_checksums, altered bytes) are recomputed. Safe to
    interrupt at any point and to run again; several processes may fill one store at once
    (give each its own shard_ids: shard_share(store.num_shards, rank, world_size)).
    Progress goes to stderr, only when `progress` and stderr is a terminal.
    """
    report = store.verify(checksums=verify_checksums)
    wanted = set(range(store.num_shards)) if shard_ids is None else {int(i) for i in shard_ids}
    for shard_id in wanted:
        store.shard_name(shard_id)  # validates the id before any work
    todo = [shard_id for shard_id in report.missing_shards if shard_id in wanted]
    lengths = {shard_id: len(store.shard_seeds(shard_id)) for shard_id in wanted}
    done_samples = sum(lengths[i] for i in wanted) - sum(lengths[i] for i in todo)
    written = samples = 0
    with tqdm(
        total=sum(lengths.values()),
        initial=done_samples,
        unit="sample",
        unit_scale=True,
        desc=f"sampling {store.path.name}",
        file=sys.stderr,
        disable=not (progress and sys.stderr.isatty()),
        dynamic_ncols=True,
    ) as bar:
        for shard_id in todo:
            if run_shard(store, shard_id, compute_fn):
                written += 1
                samples += lengths[shard_id]
            bar.update(lengths[shard_id])
    return FillResult(
        shards_written=written,
        samples_written=samples,
        shards_already_complete=len(wanted) - len(todo),
        corrupt=report.corrupt,
    )
