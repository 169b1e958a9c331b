"""Gradient maps of style channels: time and peak memory for N images, and that memory stays flat.

Each measurement runs in a fresh process (peak RSS is per process) on a random StyleGAN3-T of the
given resolution; the maps go to a temporary folder chunk by chunk, so peak memory should depend on
`--memory-mb` (or `--chunk`) and `--images-per-chunk`, not on `--images`. Usage:
    python benchmarks/bench_gradient_maps.py --resolution 256 --images 1,2,4 [--memory-mb 2048 | --chunk 8]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time


def measure(args: argparse.Namespace, images: int) -> dict:
    import torch

    from sg3probe.models.architecture import stylegan3_config
    from sg3probe.models.generator import Generator
    from sg3probe.runtime import tune_malloc
    from sg3probe.style_channels import style_layout
    from sg3probe_stylespace.gradients import auto_chunk, write_gradient_maps

    malloc = "tuned" if tune_malloc() else "default"  # as the command line runs; SG3PROBE_MALLOC=default
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = stylegan3_config("stylegan3-t", img_resolution=args.resolution, channel_base=args.channel_base,
                              channel_max=args.channel_max, num_fp16_res=0)
    G = Generator(config).eval().requires_grad_(False)
    layout = style_layout(G)
    with torch.no_grad():
        ws = G.mapping(torch.randn(images, G.z_dim), None).numpy()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        write_gradient_maps(G, ws, folder, layout, pool=args.pool, images_per_chunk=args.images_per_chunk,
                            chunk=args.chunk or None, memory_mb=args.memory_mb, method=args.method)
        seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"resolution": args.resolution, "channels": layout.channels, "pool": args.pool, "method": args.method,
            "chunk": args.chunk or auto_chunk(G, args.images_per_chunk, args.memory_mb),
            "memory_mb": args.memory_mb, "images": images, "seconds": round(seconds, 1),
            "seconds_per_image": round(seconds / images, 1), "rss_before_mb": round(before),
            "peak_rss_mb": round(peak), "threads": args.threads, "malloc": malloc}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--channel-base", type=int, default=2048)
    parser.add_argument("--channel-max", type=int, default=64)
    parser.add_argument("--images", default="1,2", help="comma list: one fresh process per count")
    parser.add_argument("--pool", type=int, default=32)
    parser.add_argument("--method", default="auto", choices=("auto", "forward", "reverse"))
    parser.add_argument("--chunk", type=int, default=0, help="products per pass (0: from --memory-mb)")
    parser.add_argument("--memory-mb", type=float, default=2048, help="memory budget of one pass")
    parser.add_argument("--images-per-chunk", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure in this process
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args, args.one)))
        return
    for count in [int(n) for n in args.images.split(",")]:
        command = [sys.executable, __file__, "--one", str(count)] + [
            item for key, value in vars(args).items() if key not in ("one", "images")
            for item in (f"--{key.replace('_', '-')}", str(value))]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        print(output.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
