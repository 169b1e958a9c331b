"""Throughput and peak memory of `sg3probe sample` for W+ and S (no images, no scorer).

Each measurement runs in a fresh process, so peak RSS belongs to that N alone; memory should
stay flat as N grows (samples stream shard by shard into the store). Usage:
    python benchmarks/bench_sample.py [--model toyfaces-aligned] [--sizes 2000,20000] [--t256]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time


def measure(model: str, n: int) -> dict:
    import torch

    from sg3probe.checkpoints import load_model
    from sg3probe.models.architecture import stylegan3_config
    from sg3probe.models.generator import Generator
    from sg3probe.runtime import tune_malloc
    from sg3probe.sampling.sampler import SamplingSpec, sample_to_store

    tune_malloc()
    if model == "t256":  # NVIDIA's FFHQ-U 256 T settings, random weights
        G = Generator(stylegan3_config("stylegan3-t", img_resolution=256, channel_base=16384,
                                       channel_max=512)).eval().requires_grad_(False)
    else:
        G = load_model(model, "cpu").generator
    spec = SamplingSpec(seeds=f"0-{n - 1}", spaces=("wplus", "s"), batch_size=256, shard_size=1000)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        sample_to_store(folder, G, spec, progress=False)
        seconds = time.perf_counter() - start
    return {"model": model, "n": n, "samples_per_s": n / seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="toyfaces-aligned")
    parser.add_argument("--sizes", default="2000,20000")
    parser.add_argument("--t256", action="store_true", help="also a random 256-px FFHQ-U T configuration")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]))))
        return
    models = [args.model] + (["t256"] if args.t256 else [])
    # The baseline of each model is its smallest N: flat memory means a peak ratio near 1.
    print(f"{'model':18s} {'N':>8s} {'samples/s':>10s} {'peak RSS MB':>12s} {'peak / smallest N':>18s}")
    for model in models:
        baseline = None
        for n in sorted(int(v) for v in args.sizes.split(",")):
            out = subprocess.run([sys.executable, __file__, "--one", model, str(n)], check=True,
                                 capture_output=True, text=True).stdout
            row = json.loads(out.strip().splitlines()[-1])
            baseline = baseline or row["peak_rss_mb"]
            print(f"{model:18s} {n:8d} {row['samples_per_s']:10.0f} {row['peak_rss_mb']:12.0f} "
                  f"{row['peak_rss_mb'] / baseline:17.2f}x", flush=True)


if __name__ == "__main__":
    main()
