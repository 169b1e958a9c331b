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


def write_gif(frames: list[np.ndarray], path: Path, frame_ms: int = 150) -> None:
    """uint8 frames [H, W, C] -> an endlessly looping animated GIF."""
    pictures = [to_pil(frame) for frame in frames]
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=frame_ms, loop=0)


def require_video():
    """The PyAV module, or a one-line ConfigError saying how to install it (call before long work)."""
    from sg3probe.errors import ConfigError

    try:
        import av
    except ImportError:
        raise ConfigError("writing MP4 needs PyAV, which is not installed; run `pip install av` "
                          "(or `pip install sg3probe[video]`), or use --gif") from None
    return av


def write_mp4(frames: list[np.ndarray], path: Path, fps: float = 8.0) -> None:
    """uint8 frames [H, W, C] -> an H.264 MP4 (yuv420p, sizes padded to even with white).

    Needs PyAV (`pip install av`, or the `video` extra: `pip install sg3probe[video]`).
    """
    from fractions import Fraction

    av = require_video()

    height, width = frames[0].shape[:2]
    padded_h, padded_w = height + height % 2, width + width % 2
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = padded_w, padded_h, "yuv420p"
        stream.options = {"crf": "18"}
        for frame in frames:
            rgb = np.full((padded_h, padded_w, 3), 255, np.uint8)
            rgb[:height, :width] = frame[..., :3] if frame.shape[-1] >= 3 else frame[..., :1]
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
