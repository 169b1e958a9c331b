"""What a toy generator's latent z stands for: its noise, its face parameters, its target image.

The toy generators are trained to map z to the render of `attributes_from_noise(toy_noise(z))`,
where `toy_noise(z) = z @ Q` and Q [z_dim, NOISE_DIM] is a fixed matrix with orthonormal
columns drawn from a seed. For Gaussian z the noise is then iid standard normal (the renderer's
distribution), and every z dimension mixes all factors, as in a real GAN's Z. The ground truth
of any z is therefore known exactly; the generator's checkpoint stores Q in its metadata.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from sg3probe.toyworld.attributes import NOISE_DIM, FaceParams, attributes_from_noise
from sg3probe.toyworld.render import RenderOutput, render

NOISE_SEED = 3  # seed of Q for the shipped toy generators

# Key of the toy-world entry in a toy generator's checkpoint metadata.
METADATA_KEY = "toyworld"


def noise_matrix(z_dim: int, seed: int = NOISE_SEED) -> torch.Tensor:
    """Q: float32 [z_dim, NOISE_DIM] with orthonormal columns, deterministic in (z_dim, seed)."""
    if z_dim < NOISE_DIM:
        raise ValueError(f"z_dim must be at least NOISE_DIM = {NOISE_DIM}; got {z_dim}")
    generator = torch.Generator().manual_seed(seed)
    gaussian = torch.randn(z_dim, NOISE_DIM, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    # Fix QR's sign freedom so that Q depends on the seed only, not on the LAPACK build.
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    return q.float()


def noise_matrix_from_metadata(metadata: Mapping[str, Any]) -> torch.Tensor:
    """Q as stored by the trainer in a toy generator's checkpoint metadata."""
    entry = metadata.get(METADATA_KEY)
    if not entry or "noise_matrix" not in entry:
        raise ValueError("this checkpoint's metadata has no toy-world noise matrix; "
                         "it was not trained by `sg3probe toy train`")
    return torch.tensor(entry["noise_matrix"], dtype=torch.float32)


def toy_noise(z: torch.Tensor, matrix: torch.Tensor | None = None) -> torch.Tensor:
    """z [batch, z_dim] -> the renderer's noise [batch, NOISE_DIM] (default Q: `noise_matrix`)."""
    if z.ndim != 2:
        raise ValueError(f"z must have shape [batch, z_dim]; got {list(z.shape)}")
    if matrix is None:
        matrix = noise_matrix(z.shape[1])
    if matrix.shape != (z.shape[1], NOISE_DIM):
        raise ValueError(f"noise matrix must have shape [{z.shape[1]}, {NOISE_DIM}] for this z; "
                         f"got {list(matrix.shape)}")
    # In float64, so that BLAS's batch-dependent summation order cannot show in float32: a face's
    # truth must not depend on the batch it is computed in.
    return (z.double() @ matrix.to(z.device, torch.float64)).float()


def ground_truth(z: torch.Tensor, aligned: bool, matrix: torch.Tensor | None = None) -> FaceParams:
    """The face parameters (attributes and pose) that latents z [batch, z_dim] stand for."""
    return attributes_from_noise(toy_noise(z, matrix).cpu(), aligned)


def target_renders(z: torch.Tensor, aligned: bool, matrix: torch.Tensor | None = None) -> RenderOutput:
    """The renders of z's faces with their part masks (what a toy generator is trained on)."""
    return render(ground_truth(z, aligned, matrix))


def target_images(z: torch.Tensor, aligned: bool, matrix: torch.Tensor | None = None) -> torch.Tensor:
    """The renders [batch, 3, 64, 64] in [-1, 1] that a toy generator is trained to output for z."""
    return target_renders(z, aligned, matrix).images
