"""The generator gates of issue 3 part 3: generated samples scored by the toy scorers, against
the renderer's own distribution.

The renderer's side (the reference) is its ground truth: attribute frequencies, means and spreads
of `sample_params`. For the region gate, the samples that should have a region are known exactly
when the generator was trained by `sg3probe toy train` (its checkpoint stores the noise matrix Q
of `latents.py`): they are those whose target render has it. For another generator, the gate falls
back to comparing the fraction of samples in which the segmenter finds a region with the fraction
of renders that have it (for eyeglasses: among the samples the scorer calls bespectacled).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from sg3probe.scorer import Scorer, check_scores
from sg3probe.toyworld.attributes import ATTRIBUTES
from sg3probe.toyworld.render import REGIONS, render, sample_params

MIN_REGION_PIXELS = 3  # a region is "found" in an image when it has at least this many pixels
UNDECIDED = (0.2, 0.8)  # probability band of an undecided binary attribute

# Tolerances of the gates (issue 3 part 3).
BINARY_FREQUENCY_TOLERANCE = 0.10
CONTINUOUS_MEAN_TOLERANCE = 0.10  # of the attribute's range
CONTINUOUS_STD_RATIO = (0.7, 1.3)
MAX_UNDECIDED_FRACTION = 0.20
ANGLE_STD_TOLERANCE = 0.25  # relative, unaligned
MAX_ALIGNED_MEAN_ABS_ANGLE = 3.0  # degrees
MIN_REGION_FOUND_RATIO = 0.90


@dataclasses.dataclass(frozen=True)
class Gate:
    """One checked gate: what was measured, what was required, whether it held."""

    name: str
    value: float
    requirement: str
    passed: bool


@dataclasses.dataclass(frozen=True)
class ScoredSamples:
    """What the scorer says about N images: scores by attribute, angle, regions found."""

    scores: dict[str, np.ndarray]  # attribute -> [N] (binary: logits)
    angle_deg: np.ndarray  # [N]
    regions_found: np.ndarray  # [N, len(REGIONS)] bool
    regions_expected: np.ndarray | None = None  # [N, len(REGIONS)] bool, from the ground truth of z

    @property
    def count(self) -> int:
        return self.angle_deg.shape[0]


@dataclasses.dataclass(frozen=True)
class Reference:
    """The renderer's statistics for one alignment."""

    aligned: bool
    binary_frequency: dict[str, float]
    continuous_mean: dict[str, float]
    continuous_std: dict[str, float]
    angle_std: float
    region_frequency: dict[str, float]  # fraction of renders with the region
    eyeglasses_region_frequency: float  # among renders with eyeglasses on


def renderer_reference(aligned: bool, n: int = 2000, seed: int = 0) -> Reference:
    """The renderer's ground-truth statistics from `n` faces (the regions from their masks)."""
    params = sample_params(seed, n, aligned)
    values = params.attribute_values().numpy()
    masks = render(params).masks
    found = _regions_found(masks)
    glasses = params.eyeglasses.numpy()
    eyeglasses = REGIONS.index("eyeglasses")
    return Reference(
        aligned=aligned,
        binary_frequency={info.name: float(values[:, i].mean())
                          for i, info in enumerate(ATTRIBUTES) if info.kind == "binary"},
        continuous_mean={info.name: float(values[:, i].mean())
                         for i, info in enumerate(ATTRIBUTES) if info.kind == "continuous"},
        continuous_std={info.name: float(values[:, i].std())
                        for i, info in enumerate(ATTRIBUTES) if info.kind == "continuous"},
        angle_std=float(params.angle.std()),
        region_frequency={name: float(found[:, i].mean()) for i, name in enumerate(REGIONS)},
        eyeglasses_region_frequency=float(found[glasses, eyeglasses].mean()) if glasses.any() else 1.0,
    )


def _regions_found(masks: torch.Tensor) -> np.ndarray:
    """[N, H, W] region ids -> [N, len(REGIONS)] bool: which regions have enough pixels."""
    counts = torch.stack([(masks == i).flatten(1).sum(dim=1) for i in range(len(REGIONS))], dim=1)
    return (counts >= MIN_REGION_PIXELS).numpy()


def score_images(scorer: Scorer, batches: Iterable[torch.Tensor],
                 expected_masks: Iterable[torch.Tensor] | None = None) -> ScoredSamples:
    """Score, segment and pose every batch of images [B, 3, 64, 64] with a toy-capable scorer;
    `expected_masks` (one [B, H, W] per batch) are the masks the images should have, if known."""
    for capability in ("segment", "pose"):
        if not scorer.supports(capability):
            raise ValueError(f"scorer {scorer.name!r} cannot {capability}; the toy gates need a "
                             "scorer with segment and pose, such as 'toyfaces'")
    scores: dict[str, list[np.ndarray]] = {}
    angles, found, expected = [], [], []
    for images in batches:
        batch_scores = check_scores(scorer, scorer.score(images), images.shape[0])
        for name, values in batch_scores.items():
            scores.setdefault(name, []).append(values)
        angles.append(np.asarray(scorer.pose(images)["angle_deg"], dtype=np.float64))
        segmentation = scorer.segment(images)
        if tuple(segmentation.regions) != REGIONS:
            raise ValueError(f"scorer {scorer.name!r} segments into {segmentation.regions}, "
                             f"not the toy regions {REGIONS}")
        found.append(_regions_found(torch.as_tensor(segmentation.masks)))
    if not angles:
        raise ValueError("no images to score")
    if expected_masks is not None:
        expected = [_regions_found(masks) for masks in expected_masks]
    return ScoredSamples({k: np.concatenate(v) for k, v in scores.items()},
                         np.concatenate(angles), np.concatenate(found),
                         np.concatenate(expected) if expected else None)


def _seed_batches(n: int, seed: int, batch_size: int) -> Iterator[range]:
    for start in range(seed, seed + n, batch_size):
        yield range(start, min(start + batch_size, seed + n))


def generated_batches(generator: Any, n: int, seed: int = 0, batch_size: int = 100,
                      truncation_psi: float = 1.0) -> Iterator[torch.Tensor]:
    """Images of seeds seed .. seed + n - 1 (NVIDIA's per-seed z), in batches, on the CPU."""
    from sg3probe.sampling.latents import z_from_seeds

    for seeds in _seed_batches(n, seed, batch_size):
        z = z_from_seeds(seeds, generator.z_dim, device=generator.device)
        with torch.no_grad():
            yield generator(z, None, truncation_psi=truncation_psi).float().clamp(-1, 1).cpu()


def target_masks(z_dim: int, aligned: bool, noise_matrix: torch.Tensor, n: int, seed: int = 0,
                 batch_size: int = 100) -> Iterator[torch.Tensor]:
    """The masks [B, H, W] of the renders that the z of the same seeds stand for (latents.py)."""
    from sg3probe.sampling.latents import z_from_seeds
    from sg3probe.toyworld.latents import ground_truth

    for seeds in _seed_batches(n, seed, batch_size):
        yield render(ground_truth(z_from_seeds(seeds, z_dim), aligned, noise_matrix)).masks


def check_gates(samples: ScoredSamples, reference: Reference) -> list[Gate]:
    """Every gate of issue 3 part 3 except the sample grid, for one model."""
    gates = []
    for info in ATTRIBUTES:
        values = samples.scores[info.name]
        if info.kind == "binary":
            frequency = float(np.mean(values > 0))
            target = reference.binary_frequency[info.name]
            gates.append(Gate(f"{info.name} frequency", frequency,
                              f"{target:.3f} +- {BINARY_FREQUENCY_TOLERANCE}",
                              abs(frequency - target) <= BINARY_FREQUENCY_TOLERANCE))
        else:
            span = info.high - info.low
            mean, target = float(values.mean()), reference.continuous_mean[info.name]
            gates.append(Gate(f"{info.name} mean", mean,
                              f"{target:.3f} +- {CONTINUOUS_MEAN_TOLERANCE * span:.3f}",
                              abs(mean - target) <= CONTINUOUS_MEAN_TOLERANCE * span))
            ratio = float(values.std()) / reference.continuous_std[info.name]
            low, high = CONTINUOUS_STD_RATIO
            gates.append(Gate(f"{info.name} std / renderer's", ratio, f"{low} .. {high}",
                              low <= ratio <= high))
    binary = [info.name for info in ATTRIBUTES if info.kind == "binary"]
    probabilities = 1.0 / (1.0 + np.exp(-np.stack([samples.scores[name] for name in binary], axis=1)))
    undecided = float(np.mean(((probabilities > UNDECIDED[0]) & (probabilities < UNDECIDED[1])).any(axis=1)))
    gates.append(Gate("samples with an undecided binary attribute", undecided,
                      f"<= {MAX_UNDECIDED_FRACTION}", undecided <= MAX_UNDECIDED_FRACTION))
    if reference.aligned:
        mean_abs = float(np.mean(np.abs(samples.angle_deg)))
        gates.append(Gate("mean |angle| (deg)", mean_abs, f"<= {MAX_ALIGNED_MEAN_ABS_ANGLE}",
                          mean_abs <= MAX_ALIGNED_MEAN_ABS_ANGLE))
    else:
        ratio = float(samples.angle_deg.std()) / reference.angle_std
        gates.append(Gate("angle std / renderer's", ratio,
                          f"1 +- {ANGLE_STD_TOLERANCE}", abs(ratio - 1.0) <= ANGLE_STD_TOLERANCE))
    if samples.regions_expected is not None:
        for index, name in enumerate(REGIONS):
            should = samples.regions_expected[:, index]
            if not should.any():
                continue
            found = float(samples.regions_found[should, index].mean())
            gates.append(Gate(f"region {name} found where expected", found,
                              f">= {MIN_REGION_FOUND_RATIO} of {int(should.sum())} samples",
                              found >= MIN_REGION_FOUND_RATIO))
        return gates
    for index, name in enumerate(REGIONS):
        if name == "eyeglasses":
            should = samples.scores["eyeglasses"] > 0
            if not should.any():
                continue  # the frequency gate already fails
            found = float(samples.regions_found[should, index].mean())
            expected = reference.eyeglasses_region_frequency
        else:
            found = float(samples.regions_found[:, index].mean())
            expected = reference.region_frequency[name]
        if expected == 0.0:
            continue
        ratio = found / expected
        gates.append(Gate(f"region {name} found / expected", ratio,
                          f">= {MIN_REGION_FOUND_RATIO} (renderer: {expected:.3f})",
                          ratio >= MIN_REGION_FOUND_RATIO))
    return gates


def evaluate_generator(generator: Any, scorer: Scorer, aligned: bool, n: int = 2000, seed: int = 0,
                       batch_size: int = 100, noise_matrix: torch.Tensor | None = None) -> list[Gate]:
    """Sample `n` images from `generator` and check them against the renderer's statistics;
    with the generator's `noise_matrix` (toy generators), regions against each z's ground truth."""
    expected = None
    if noise_matrix is not None:
        expected = target_masks(generator.z_dim, aligned, noise_matrix, n, seed, batch_size)
    samples = score_images(scorer, generated_batches(generator, n, seed, batch_size), expected)
    return check_gates(samples, renderer_reference(aligned, n=max(n, 2000)))


@torch.no_grad()
def render_fidelity(generator: Any, aligned: bool, noise_matrix: torch.Tensor, n: int = 2000, seed: int = 0,
                    batch_size: int = 100) -> dict[str, float]:
    """Mean |generated - render of z| (in [0, 1] units) inside each region of the render, and overall.

    A check that does not go through the toy scorer: how close each generated face is, region by
    region, to the face its latent stands for (only for generators trained by `sg3probe toy train`).
    """
    from sg3probe.sampling.latents import z_from_seeds
    from sg3probe.toyworld.latents import ground_truth

    sums, counts = np.zeros(len(REGIONS) + 1), np.zeros(len(REGIONS) + 1)
    for seeds in _seed_batches(n, seed, batch_size):
        z = z_from_seeds(seeds, generator.z_dim, device=generator.device)
        images = generator(z, None).float().clamp(-1, 1).cpu()
        target = render(ground_truth(z.cpu(), aligned, noise_matrix))
        error = (images - target.images).abs().mean(dim=1) / 2  # [B, H, W] in [0, 1] units
        for index in range(len(REGIONS)):
            inside = target.masks == index
            sums[index] += float(error[inside].sum())
            counts[index] += float(inside.sum())
        sums[-1] += float(error.sum())
        counts[-1] += error.numel()
    names = (*REGIONS, "all pixels")
    return {name: float(sums[i] / counts[i]) for i, name in enumerate(names) if counts[i]}


def gates_to_json(gates: list[Gate]) -> dict[str, Any]:
    """JSON-able summary: every gate, and whether all passed."""
    return {"passed": all(g.passed for g in gates),
            "gates": [{**dataclasses.asdict(g), "value": None if math.isnan(g.value) else g.value}
                      for g in gates]}


def format_gates(title: str, gates: list[Gate]) -> str:
    """A plain-text table of gates with PASS / FAIL per line."""
    width = max(len(g.name) for g in gates)
    lines = [title]
    for gate in gates:
        lines.append(f"  {'PASS' if gate.passed else 'FAIL'}  {gate.name:<{width}}  "
                     f"{gate.value:8.3f}  (need {gate.requirement})")
    lines.append(f"  {sum(g.passed for g in gates)}/{len(gates)} gates passed")
    return "\n".join(lines)
