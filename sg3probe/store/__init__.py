"""The on-disk sample store: seed-sharded .npy arrays + manifest.json, resumable, memory-mapped.

    store = SampleStore.create("samples/", arrays={"ws": ArraySpec((16, 512), "float32")},
                               seeds="0-99999", shard_size=1000, metadata={"model_sha256": ...})
    fill(store, compute_fn)            # compute_fn(seeds: list[int]) -> {"ws": [len(seeds), 16, 512]}
    ws = SampleStore.open("samples/").array("ws")   # lazy [100000, 16, 512] over memory maps
"""
from sg3probe.store.errors import StoreError
from sg3probe.store.fill import FillResult, fill, rank_and_world, run_shard, shard_share
from sg3probe.store.manifest import FORMAT_VERSION, ArraySpec
from sg3probe.store.reading import Batch, ShardedArray
from sg3probe.store.seeds import format_seeds, parse_seed_ranges, parse_seeds
from sg3probe.store.store import SampleStore, VerifyReport

__all__ = [
    "FORMAT_VERSION",
    "ArraySpec",
    "Batch",
    "FillResult",
    "SampleStore",
    "ShardedArray",
    "StoreError",
    "VerifyReport",
    "fill",
    "format_seeds",
    "parse_seed_ranges",
    "parse_seeds",
    "rank_and_world",
    "run_shard",
    "shard_share",
]
