"""Sample store throughput and peak memory for two store sizes, side by side.

Fills a store with a synthetic compute_fn of the size of the 64-px toy model's W+ ([16, 128]
float32) and S (~600 channels, stored as float16), then streams it back with iter_batches.
Each size runs in a fresh process, so its peak RSS (resource.getrusage) is its own; memory
that stays flat from the small N to the large one shows that nothing grows with the store.
Usage:
    python benchmarks/bench_store.py [N_SMALL N_LARGE] [--shard-size 1000] [--dir /tmp]
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WPLUS_SHAPE = (16, 128)  # num_ws x w_dim of the 64-px toy model
STYLES_SIZE = 600  # total style channels of its synthesis layers, about


def _peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def measure(num_samples: int, shard_size: int, folder: Path) -> dict:
    import numpy as np

    from sg3probe.store import ArraySpec, SampleStore, fill

    baseline = _peak_rss_mib()  # Python, NumPy and whatever `import sg3probe` brings in

    def compute(seeds: list[int]) -> dict:
        rng = np.random.default_rng(seeds[0])  # one RNG per shard is enough for a store benchmark
        return {
            "wplus": rng.standard_normal((len(seeds), *WPLUS_SHAPE), dtype=np.float32),
            "styles": rng.standard_normal((len(seeds), STYLES_SIZE), dtype=np.float32),  # cast on write
        }

    path = folder / f"store-{num_samples}"
    store = SampleStore.create(
        path,
        arrays={"wplus": ArraySpec(WPLUS_SHAPE, "float32"), "styles": ArraySpec(STYLES_SIZE, "float16")},
        seeds=f"0-{num_samples - 1}",
        shard_size=shard_size,
        metadata={"benchmark": "bench_store"},
        overwrite=True,
    )
    start = time.perf_counter()
    fill(store, compute, progress=False)
    write_s = time.perf_counter() - start
    after_write = _peak_rss_mib()

    start = time.perf_counter()
    total = 0.0
    for batch in SampleStore.open(path).iter_batches(batch_size=1024):
        total += float(batch["wplus"][:, 0, 0].sum()) + float(batch["styles"][:, 0].sum(dtype=np.float32))
    read_s = time.perf_counter() - start
    after_read = _peak_rss_mib()

    start = time.perf_counter()
    report = SampleStore.open(path).verify(checksums=True)
    verify_s = time.perf_counter() - start
    disk = sum(file.stat().st_size for file in path.rglob("*") if file.is_file())
    shutil.rmtree(path)
    return {
        "samples": num_samples,
        "disk_mib": disk / 2**20,
        "write_per_s": num_samples / write_s,
        "read_per_s": num_samples / read_s,
        "verify_s": verify_s,
        "verified": report.ok and not report.missing_shards,
        "rss_baseline_mib": baseline,
        "rss_peak_write_mib": after_write,
        "rss_peak_read_mib": after_read,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[10_000, 100_000])
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--dir", type=Path, default=None, help="folder for the stores (default: temp)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()

    if args.one:
        print(json.dumps(measure(args.sizes[0], args.shard_size, args.dir)))
        return

    folder = Path(tempfile.mkdtemp(prefix="bench_store-", dir=args.dir))
    try:
        rows = []
        for size in args.sizes:
            command = [sys.executable, __file__, str(size), "--shard-size", str(args.shard_size)]
            command += ["--dir", str(folder), "--one"]
            child = subprocess.run(command, capture_output=True, text=True, check=False)
            if child.returncode != 0:
                sys.exit(f"benchmark for N={size} failed:\n{child.stderr}")
            rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    print(f"W+ {list(WPLUS_SHAPE)} float32 + S [{STYLES_SIZE}] float16 a sample; {args.shard_size} a shard")
    header = ("samples", "disk MiB", "write/s", "read/s", "verify s", "RSS base", "RSS write", "RSS read")
    print(("{:>10}" * len(header)).format(*header))
    for row in rows:
        print(
            f"{row['samples']:>10}{row['disk_mib']:>10.0f}{row['write_per_s']:>10.0f}"
            f"{row['read_per_s']:>10.0f}{row['verify_s']:>10.2f}{row['rss_baseline_mib']:>10.0f}"
            f"{row['rss_peak_write_mib']:>10.0f}{row['rss_peak_read_mib']:>10.0f}"
            + ("" if row["verified"] else "   VERIFY FAILED")
        )
    print("RSS in MiB (peak so far, per process); 'base' is after imports, before the store is touched.")


if __name__ == "__main__":
    main()
