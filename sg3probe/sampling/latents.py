"""Latents from seeds, with NVIDIA's convention so that a seed gives NVIDIA's image."""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch


def z_from_seed(seed: int, z_dim: int) -> np.ndarray:
    """z for one seed: np.random.RandomState(seed).randn(1, z_dim)[0] (gen_images.py), float64."""
    return np.random.RandomState(seed).randn(1, z_dim)[0]


def z_from_seeds(seeds: Iterable[int], z_dim: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """z [len(seeds), z_dim] float32; each row depends on its seed only, never on batching."""
    rows = [z_from_seed(int(seed), z_dim) for seed in seeds]
    return torch.from_numpy(np.stack(rows).astype(np.float32)).to(device)
