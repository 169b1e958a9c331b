"""Generator speed and peak memory: our ops vs NVIDIA's naive reference formulation, side by side.

Each measurement runs in a fresh process (peak RSS is per process), with the same random weights
and inputs for both formulations; the outputs are compared too. Usage:
    python benchmarks/bench_generator.py [--configs t64,r64,t256] [--threads 2]
    SG3PROBE_MALLOC=default python benchmarks/bench_generator.py   # glibc's malloc defaults
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

CONFIGS = {
    # name: (cfg, kwargs as train.py builds them, batch, timed calls)
    "t64": ("stylegan3-t", dict(img_resolution=64, channel_base=1024, channel_max=32), 16, 5),
    "r64": ("stylegan3-r", dict(img_resolution=64, channel_base=1024, channel_max=32), 16, 5),
    "t256": ("stylegan3-t", dict(img_resolution=256, channel_base=16384, channel_max=512), 4, 3),
}


def measure(name: str, impl: str, threads: int) -> dict:
    import numpy as np
    import torch

    from sg3probe.models.architecture import stylegan3_config
    from sg3probe.models.generator import Generator
    from sg3probe.models.ops import use_reference_ops

    from sg3probe.runtime import tune_malloc

    torch.set_num_threads(threads)
    malloc = "tuned" if tune_malloc() else "default"  # SG3PROBE_MALLOC=default for glibc's own
    cfg, kwargs, batch, calls = CONFIGS[name]
    torch.manual_seed(0)
    G = Generator(stylegan3_config(cfg, **kwargs)).eval().requires_grad_(False)
    z = torch.randn(batch, G.z_dim, generator=torch.Generator().manual_seed(1))
    times = []
    with torch.no_grad():
        context = use_reference_ops(G) if impl == "naive" else _nullcontext()
        with context:
            images = G(z)  # warm-up
            for _ in range(calls):
                start = time.perf_counter()
                images = G(z)
                times.append(time.perf_counter() - start)
    median = sorted(times)[len(times) // 2]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"config": name, "impl": impl, "batch": batch, "malloc": malloc, "median_s": median, "img_per_s": batch / median,
            "peak_rss_mb": peak_mb, "checksum": images.double().abs().mean().item(),
            "sample": images[0, :, :8, :8].flatten().tolist()}


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="t64,r64,t256")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--one", nargs=2, metavar=("CONFIG", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], args.one[1], args.threads)))
        return
    print(f"{'config':6s} {'malloc':7s} {'batch':>5s} {'naive img/s':>12s} {'ours img/s':>11s} {'speed-up':>9s} "
          f"{'naive peak MB':>14s} {'ours peak MB':>13s} {'max |diff|':>11s}")
    for name in args.configs.split(","):
        results = {}
        for impl in ("naive", "ours"):
            out = subprocess.run([sys.executable, __file__, "--one", name, impl, "--threads", str(args.threads)],
                                 check=True, capture_output=True, text=True).stdout
            results[impl] = json.loads(out.strip().splitlines()[-1])
        naive, ours = results["naive"], results["ours"]
        diff = max(abs(a - b) for a, b in zip(naive["sample"], ours["sample"]))
        print(f"{name:6s} {ours['malloc']:7s} {ours['batch']:5d} {naive['img_per_s']:12.2f} {ours['img_per_s']:11.2f} "
              f"{ours['img_per_s'] / naive['img_per_s']:8.2f}x {naive['peak_rss_mb']:14.0f} "
              f"{ours['peak_rss_mb']:13.0f} {diff:11.2e}", flush=True)


if __name__ == "__main__":
    main()
