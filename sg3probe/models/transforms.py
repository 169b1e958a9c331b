"""The geometric user transform of the input layer (rotation and translation)."""
from __future__ import annotations

import numpy as np
import torch


def make_transform(translate: tuple[float, float] = (0.0, 0.0), angle: float = 0.0) -> np.ndarray:
    """NVIDIA gen_images.py's matrix [[cos a, sin a, tx], [-sin a, cos a, ty], [0, 0, 1]].

    `angle` is in degrees, `translate` in fractions of the image. The generator takes the INVERSE
    of this matrix (see `inverse_transform`); rotating by +a turns the image content by a.
    """
    m = np.eye(3)
    a = np.deg2rad(angle)
    m[0, 0], m[0, 1], m[0, 2] = np.cos(a), np.sin(a), translate[0]
    m[1, 0], m[1, 1], m[1, 2] = -np.sin(a), np.cos(a), translate[1]
    return m


def inverse_transform(translate: tuple[float, float] = (0.0, 0.0), angle: float = 0.0) -> torch.Tensor:
    """The float32 [3, 3] matrix to pass as `transform=` to G.synthesis / G(...)."""
    return torch.as_tensor(np.linalg.inv(make_transform(translate, angle)), dtype=torch.float32)


def batch_inverse_transforms(angles: np.ndarray, translations: np.ndarray) -> torch.Tensor:
    """Per-sample inverse transforms [B, 3, 3] from angles [B] (degrees) and translations [B, 2]."""
    return torch.stack([inverse_transform(tuple(t), float(a)) for a, t in zip(angles, translations)])
