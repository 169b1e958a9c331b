"""Generator outputs as pictures: uint8 conversion (NVIDIA's), PNG files and grids."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """images [B, C, H, W] in about [-1, 1] -> uint8 [B, H, W, C], as gen_images.py converts."""
    pixels = (images.detach().float().cpu() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).numpy()


def to_pil(pixels: np.ndarray) -> Image.Image:
    """uint8 [H, W, C] with C in {1, 3, 4} -> a PIL image."""
    if pixels.shape[-1] == 1:
        return Image.fromarray(pixels[..., 0], mode="L")
    return Image.fromarray(pixels)


def tile(pixels: np.ndarray, columns: int | None = None, gap: int = 1) -> np.ndarray:
    """uint8 pictures [B, H, W, C] laid out row by row on a white canvas -> [H', W', C]."""
    batch, height, width, channels = pixels.shape
    columns = columns or math.ceil(math.sqrt(batch))
    rows = math.ceil(batch / columns)
    canvas = np.full((rows * (height + gap) + gap, columns * (width + gap) + gap, channels), 255, np.uint8)
    for index in range(batch):
        top = gap + (index // columns) * (height + gap)
        left = gap + (index % columns) * (width + gap)
        canvas[top:top + height, left:left + width] = pixels[index]
    return canvas


def image_grid(images: torch.Tensor, columns: int | None = None) -> Image.Image:
    """A grid picture of generator outputs [B, C, H, W]."""
    return to_pil(tile(to_uint8(images), columns))


def save_png(images: torch.Tensor, paths: list[Path]) -> None:
    """Write each image of [B, C, H, W] to its own PNG file."""
    for pixels, path in zip(to_uint8(images), paths):
        to_pil(pixels).save(path)
