"""Gradient maps of style channels: |d pooled image / d s_c|, averaged over RGB.

For each image, the Jacobian of the average-pooled output [3, P, P] with respect to every selected
style channel (all non-ToRGB layers) is computed in batched Jacobian products:

- "forward": forward-mode products (torch.func.jvp under vmap), `chunk` channels per pass; the
  cost grows with the number of channels. Images of a batch share each one-hot tangent, which is
  exact because the images of a batch do not interact.
- "reverse": vector-Jacobian products (autograd.grad with is_grads_batched), `chunk` pooled
  output elements per pass; the cost grows with 3 * P * P.
- "auto": reverse when 3 * P * P <= 1.5 * channels, else forward. Measured on CPU (torch 2.13), a
  forward product costs about 1.6x (64 px, 174 channels) to 20x (16 px, 28 channels) a reverse one:
  the generator's forward-mode derivatives go through slower paths than its backward.

Memory grows with the products per pass times the images per batch: each product holds a few
copies of the largest layer's activations. `auto_chunk` sizes the pass to a memory budget from
the architecture; measured on CPU (torch 2.13, forward mode), one product of one image peaks at
8-10x the largest layer tensor (a 256-px T, channel_max 64: ~200 MB per product, 20 MB tensor).

`write_gradient_maps` stores the maps chunk by chunk as .npy files in a folder and skips the
chunks already there, so an interrupted computation resumes where it stopped.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from sg3probe.style_channels import StyleLayout

METHODS = ("auto", "forward", "reverse")


# Peak bytes of one Jacobian product of one image, in units of the largest layer tensor (measured
# 8-10x on CPU; see the module docstring).
_PRODUCT_PEAK_PER_LARGEST_TENSOR = 10


def auto_chunk(G, images: int, memory_mb: float) -> int:
    """Products per pass such that `images` images stay within about memory_mb (at least 1)."""
    largest = max(spec.out_channels * (spec.in_size * spec.up_factor) ** 2 for spec in G.architecture.layers)
    per_product = _PRODUCT_PEAK_PER_LARGEST_TENSOR * largest * 4 * max(images, 1)  # float32 bytes
    return max(1, int(memory_mb * 2**20 // per_product))


def pooled_render(G, styles: Mapping[str, torch.Tensor], pool: int, transform=None) -> torch.Tensor:
    """Render styles and average-pool the images to [B, 3, pool, pool]."""
    images = G.synthesis(styles=styles, transform=transform)  # [B, C, H, W]
    size = images.shape[-1]
    if size % pool:
        raise ValueError(f"pool size {pool} does not divide the image size {size}; use a divisor of {size}")
    return F.avg_pool2d(images, size // pool)


def gradient_maps(G, styles: Mapping[str, torch.Tensor], layout: StyleLayout, *, pool: int = 32,
                  chunk: int | None = None, memory_mb: float = 2048, method: str = "auto",
                  transform=None) -> torch.Tensor:
    """Gradient maps [B, channels, pool, pool] of a batch of styles: mean over RGB of |d pooled / d s_c|.

    `chunk` bounds memory: the number of channels (forward) or output elements (reverse) per pass;
    None sizes it to `memory_mb` with `auto_chunk`.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if chunk is None:
        chunk = auto_chunk(G, len(next(iter(styles.values()))), memory_mb)
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    if method == "auto":
        method = "reverse" if 3 * pool * pool <= 1.5 * layout.channels else "forward"
    styles = {name: value.detach() for name, value in styles.items()}
    run = _forward_maps if method == "forward" else _reverse_maps
    return run(G, styles, layout, pool, chunk, transform)


def _render_flat(G, styles, layout, pool, transform):
    """A function flat selected styles [B, channels] -> pooled images [B, 3, pool, pool]."""
    def render(flat: torch.Tensor) -> torch.Tensor:
        replaced = dict(styles)
        replaced.update(zip(layout.names, torch.split(flat, list(layout.sizes), dim=1)))
        return pooled_render(G, replaced, pool, transform)
    return render


def _forward_maps(G, styles, layout, pool, chunk, transform) -> torch.Tensor:
    flat = torch.cat([styles[name] for name in layout.names], dim=1)  # [B, channels]
    batch, channels = flat.shape
    render = _render_flat(G, styles, layout, pool, transform)

    def column(tangent: torch.Tensor) -> torch.Tensor:  # tangent [channels] shared by all images
        return torch.func.jvp(render, (flat,), (tangent.expand(batch, channels),))[1]

    maps = torch.empty(batch, channels, pool, pool, dtype=flat.dtype)
    eye = torch.eye(channels, dtype=flat.dtype, device=flat.device)
    for start in range(0, channels, chunk):
        stop = min(start + chunk, channels)
        jacobian = torch.func.vmap(column)(eye[start:stop])  # [K, B, 3, pool, pool]
        maps[:, start:stop] = jacobian.abs().mean(dim=2).transpose(0, 1).cpu()
    return maps


def _reverse_maps(G, styles, layout, pool, chunk, transform) -> torch.Tensor:
    flat = torch.cat([styles[name] for name in layout.names], dim=1).requires_grad_(True)
    batch, channels = flat.shape
    with torch.enable_grad():
        pooled = _render_flat(G, styles, layout, pool, transform)(flat)  # [B, 3, pool, pool]
        outputs = pooled.reshape(batch, -1)  # [B, 3 * pool * pool]
        count = outputs.shape[1]
        maps = torch.zeros(batch, channels, pool * pool, dtype=flat.dtype)
        eye = torch.eye(count, dtype=flat.dtype, device=flat.device)
        for start in range(0, count, chunk):
            stop = min(start + chunk, count)
            # One-hot cotangents shared by all images: each image's row is its own gradient.
            cotangents = eye[start:stop, None, :].expand(stop - start, batch, count)
            (grads,) = torch.autograd.grad(outputs, flat, cotangents, retain_graph=stop < count,
                                           is_grads_batched=True)  # [K, B, channels]
            pixels = torch.arange(start, stop) % (pool * pool)
            maps.index_add_(2, pixels, grads.abs().permute(1, 2, 0).cpu())
    return (maps / 3).reshape(batch, channels, pool, pool)


def _chunk_path(folder: Path, start: int, stop: int) -> Path:
    return folder / f"maps_{start:07d}_{stop:07d}.npy"


def write_gradient_maps(G, ws: np.ndarray | torch.Tensor, folder: str | Path, layout: StyleLayout, *,
                        pool: int = 32, images_per_chunk: int = 8, chunk: int | None = None,
                        memory_mb: float = 2048, method: str = "auto", transforms: np.ndarray | None = None,
                        progress=None) -> list[Path]:
    """Gradient maps of ws [N, num_ws, w_dim] as float16 .npy files of `images_per_chunk` images each.

    Existing chunk files are kept, so a second call after an interruption computes only the rest.
    Files are written atomically (temporary name, then rename). Returns the chunk paths in order.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    count = len(ws)
    starts = list(range(0, count, images_per_chunk))
    paths = []
    steps = progress(starts, total=len(starts), desc="gradient maps") if progress else starts
    for start in steps:
        stop = min(start + images_per_chunk, count)
        path = _chunk_path(folder, start, stop)
        paths.append(path)
        if path.exists():
            continue
        batch = torch.as_tensor(np.asarray(ws[start:stop]), dtype=torch.float32, device=G.device)
        transform = None if transforms is None else torch.as_tensor(transforms[start:stop], dtype=torch.float32)
        with torch.no_grad():
            styles = G.styles(batch)
        maps = gradient_maps(G, styles, layout, pool=pool, chunk=chunk, memory_mb=memory_mb, method=method,
                             transform=transform)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(temporary, "wb") as handle:
            np.save(handle, maps.numpy().astype(np.float16))
        os.replace(temporary, path)
    return paths


def read_gradient_maps(paths: Sequence[Path]) -> Iterator[np.ndarray]:
    """The chunks written by write_gradient_maps, one [n, channels, pool, pool] float32 array each."""
    for path in paths:
        yield np.load(path).astype(np.float32)
