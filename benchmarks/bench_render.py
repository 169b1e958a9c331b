"""Throughput of the toyfaces renderer: prints images/s for aligned and unaligned batches.

The CPU is shared, so the script times many short runs and prints the best (the renderer's
own speed) and the median (what a busy machine gives).

Usage: python benchmarks/bench_render.py [--batch 512] [--repeats 10] [--threads N]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from sg3probe.toyworld.render import render, sample_params


def _rates(batch: int, repeats: int, aligned: bool) -> list[float]:
    """Images/s of `repeats` renders of `batch` faces each."""
    params = sample_params(seed=0, n=batch, aligned=aligned)
    render(params)  # warm-up: first calls allocate and build caches
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        render(params)
        rates.append(batch / (time.perf_counter() - start))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512, help="faces per render() call")
    parser.add_argument("--repeats", type=int, default=10, help="timed render() calls")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}")
    for aligned in (True, False):
        rates = _rates(args.batch, args.repeats, aligned)
        print(f"{'aligned' if aligned else 'unaligned'}: best {max(rates):.0f} images/s, "
              f"median {statistics.median(rates):.0f} images/s")


if __name__ == "__main__":
    main()
