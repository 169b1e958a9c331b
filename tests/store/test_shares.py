"""Several processes filling one store: each process's share of the shards, from options or a launcher."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sg3probe.store import SampleStore, rank_and_world, shard_share


def test_the_shares_of_every_rank_cover_each_shard_once():
    for world in (1, 2, 3, 7):
        shares = [shard_share(10, rank, world) for rank in range(world)]
        assert sorted(s for share in shares for s in share) == list(range(10))
    assert shard_share(3, 4, 5) == []  # more processes than shards: some have nothing to do
    with pytest.raises(ValueError, match="the rank 0 to 1"):
        shard_share(10, 2, 2)


@pytest.mark.parametrize("environ, expected", [
    ({}, (0, 1)),
    ({"RANK": "1", "WORLD_SIZE": "4"}, (1, 4)),  # torchrun
    ({"SLURM_PROCID": "2", "SLURM_NTASKS": "3"}, (2, 3)),  # SLURM
    ({"RANK": "0", "WORLD_SIZE": "2", "SLURM_PROCID": "5", "SLURM_NTASKS": "8"}, (0, 2)),  # torchrun under SLURM
    ({"RANK": "3"}, (0, 1)),  # a rank without a world size is not a launcher's
])
def test_rank_and_world_come_from_the_launcher(environ, expected):
    assert rank_and_world(environ) == expected


def test_a_launcher_value_that_is_not_a_number_is_an_error():
    with pytest.raises(ValueError, match="must be whole numbers"):
        rank_and_world({"SLURM_PROCID": "x", "SLURM_NTASKS": "2"})


def _sample(out: Path, **environ: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "sg3probe", "sample", "--seeds", "0-47", "--spaces", "w", "--shard-size", "8",
               "--out", str(out)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", **environ})


def test_two_processes_started_at_once_fill_one_store_as_one_process_does(tmp_path):
    together = [_sample(tmp_path / "shared", RANK=str(rank), WORLD_SIZE="2") for rank in (0, 1)]
    alone = _sample(tmp_path / "alone")
    for process in together + [alone]:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
    shared, single = SampleStore.open(tmp_path / "shared"), SampleStore.open(tmp_path / "alone")
    assert shared.missing_shards() == [] and shared.verify(checksums=True).ok
    np.testing.assert_array_equal(shared.read("w"), single.read("w"))
    np.testing.assert_array_equal(shared.seeds, single.seeds)
