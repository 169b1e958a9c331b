"""A deterministic compute_fn for the store tests; the killed subprocess imports it too."""
import numpy as np

from sg3probe.store import ArraySpec

ARRAYS = {
    "ws": ArraySpec((3, 4), "float32"),
    "styles": ArraySpec((5,), "float16"),
    "score": ArraySpec((), "float32"),
    "label": ArraySpec((), "uint8"),
}
SEEDS = "0-99,1000-1049"  # 150 samples, two seed ranges
SHARD_SIZE = 8  # 19 shards, the last one short, one spanning both seed ranges
METADATA = {"model": "toy", "model_sha256": "0" * 64, "sampling": {"truncation_psi": 0.7}}


def compute(seeds):
    """One RNG per seed, so a shard's arrays depend on its seeds alone; float64 in, cast on write."""
    ws = np.stack([np.random.RandomState(seed).randn(3, 4) for seed in seeds])  # [n, 3, 4]
    return {
        "ws": ws,
        "styles": ws.reshape(len(seeds), 12)[:, :5] * 3.0,
        "score": ws.sum(axis=(1, 2)),
        "label": np.asarray(seeds, dtype=np.int64) % 7,
    }
