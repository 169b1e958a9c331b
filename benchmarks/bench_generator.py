"""Generator speed and peak memory: our ops vs NVIDIA's naive reference formulation, side by side.

For every configuration and malloc setting: one process times both formulations on the same random
weights and inputs, interleaving their calls (so load from other processes hits both alike) and
keeping the best of N; two more processes, one per formulation, measure peak RSS (a per-process
figure). The malloc setting is process-wide, so each setting runs in its own processes:
`tuned` is what the CLI applies (sg3probe.runtime.tune_malloc), `default` is glibc's own.
The 1-minute load average is printed with every row: on a busy 2-core machine, compare ratios.

    python benchmarks/bench_generator.py [--configs t64,r64,t256] [--malloc tuned,default]
                                         [--threads 2] [--repeats N]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

CONFIGS = {
    # name: (cfg, kwargs as train.py builds them, batch, timed calls per formulation)
    "t64": ("stylegan3-t", dict(img_resolution=64, channel_base=1024, channel_max=32), 16, 5),
    "r64": ("stylegan3-r", dict(img_resolution=64, channel_base=1024, channel_max=32), 16, 5),
    "t256": ("stylegan3-t", dict(img_resolution=256, channel_base=16384, channel_max=512), 4, 3),
}
IMPLS = ("naive", "ours")


def _build(name: str, threads: int):
    """The configuration's generator (torch seed 0) and its latents, in this process's malloc setting."""
    import torch

    from sg3probe.models.architecture import stylegan3_config
    from sg3probe.models.generator import Generator
    from sg3probe.runtime import tune_malloc

    malloc = "tuned" if tune_malloc() else "default"  # SG3PROBE_MALLOC=default keeps glibc's own
    torch.set_num_threads(threads)
    cfg, kwargs, batch, _ = CONFIGS[name]
    torch.manual_seed(0)
    G = Generator(stylegan3_config(cfg, **kwargs)).eval().requires_grad_(False)
    z = torch.randn(batch, G.z_dim, generator=torch.Generator().manual_seed(1))
    return G, z, malloc


def _render(G, z, impl: str):
    import contextlib

    import torch

    from sg3probe.models.ops import use_reference_ops

    with torch.no_grad(), (use_reference_ops(G) if impl == "naive" else contextlib.nullcontext()):
        return G(z)


def measure_time(name: str, threads: int, repeats: int) -> dict:
    """Best and median seconds per call of each formulation, calls interleaved; output difference."""
    G, z, malloc = _build(name, threads)
    images = {impl: _render(G, z, impl) for impl in IMPLS}  # warm-up
    wall = {impl: [] for impl in IMPLS}
    for round_ in range(repeats):
        for impl in (IMPLS if round_ % 2 == 0 else IMPLS[::-1]):
            start = time.perf_counter()
            _render(G, z, impl)
            wall[impl].append(time.perf_counter() - start)
    return {"malloc": malloc, "batch": z.shape[0],
            "best_s": {impl: min(v) for impl, v in wall.items()},
            "median_s": {impl: sorted(v)[len(v) // 2] for impl, v in wall.items()},
            "max_abs_diff": (images["ours"] - images["naive"]).abs().max().item()}


def measure_peak(name: str, impl: str, threads: int) -> dict:
    """Peak resident set of a process that builds the generator and renders once with `impl`."""
    G, z, malloc = _build(name, threads)
    _render(G, z, impl)
    return {"malloc": malloc, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _child(args: list[str], malloc: str) -> dict:
    env = dict(os.environ, SG3PROBE_MALLOC=malloc)
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="t64,r64,t256")
    parser.add_argument("--malloc", default="tuned,default",
                        help="comma-separated: tuned (the CLI's), default (glibc's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per formulation (default per config)")
    parser.add_argument("--time", metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--peak", nargs=2, metavar=("CONFIG", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.time:
        print(json.dumps(measure_time(args.time, args.threads, args.repeats or CONFIGS[args.time][3])))
        return
    if args.peak:
        print(json.dumps(measure_peak(*args.peak, args.threads)))
        return

    import torch

    print(f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f} at start; images/s: best of N interleaved calls (median in brackets); "
          f"peak = peak RSS of a process rendering once; load = 1-minute load average after the row")
    header = (f"{'config':6s} {'malloc':7s} {'batch':>5s} {'naive img/s':>17s} {'ours img/s':>17s} {'speed-up':>8s} "
              f"{'naive peak MB':>13s} {'ours peak MB':>12s} {'ours/naive peak':>15s} {'max |diff|':>10s} {'load':>5s}")
    print(header)
    for malloc in args.malloc.split(","):
        if malloc not in ("tuned", "default"):
            parser.error(f"--malloc: unknown setting {malloc!r}; use tuned and/or default")
        for name in args.configs.split(","):
            if name not in CONFIGS:
                parser.error(f"--configs: unknown configuration {name!r}; choose from {', '.join(CONFIGS)}")
            common = ["--threads", str(args.threads)]
            repeats = ["--repeats", str(args.repeats)] if args.repeats else []
            timing = _child(["--time", name, *common, *repeats], malloc)
            peaks = {impl: _child(["--peak", name, impl, *common], malloc)["peak_mb"] for impl in IMPLS}
            batch, best, median = timing["batch"], timing["best_s"], timing["median_s"]
            speed = {impl: f"{batch / best[impl]:.2f} ({batch / median[impl]:.2f})" for impl in IMPLS}
            row = (f"{name:6s} {timing['malloc']:7s} {batch:5d} {speed['naive']:>17s} {speed['ours']:>17s} "
                   f"{best['naive'] / best['ours']:7.2f}x {peaks['naive']:13.0f} {peaks['ours']:12.0f} "
                   f"{peaks['ours'] / peaks['naive']:15.2f} {timing['max_abs_diff']:10.2e} {os.getloadavg()[0]:5.2f}")
            print(row, flush=True)


if __name__ == "__main__":
    main()
