"""Training the toy scorer net on renders, and measuring it on held-out renders.

Each step renders a fresh batch (half aligned, half unaligned; rendering is cheaper than the
step) and degrades it with random augmentations so that the scorers also read generated images:
colour jitter, Gaussian blur, down-and-up resampling, Gaussian noise and quantisation. None of
them moves a pixel, so the render's masks and pose stay the targets.

Training is seeded: the faces of step k come from seeds derived from (seed, k), the augmentations
from a torch.Generator seeded with `seed`; held-out faces use seeds from `HELD_OUT_SEED` on, a
range training never reaches.
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from sg3probe.toyworld.attributes import ATTRIBUTES
from sg3probe.toyworld.render import REGIONS, RESOLUTION, render, sample_params
from sg3probe.toyworld.scorers import (
    BINARY,
    CONTINUOUS,
    Predictions,
    ToyFacesNet,
    ToyFacesPredictor,
    angle_difference,
    pose_targets,
    save_scorer_net,
)

HELD_OUT_SEED = 1_000_000_000  # training seeds stay below this
_BINARY_COLUMNS = [i for i, info in enumerate(ATTRIBUTES) if info.kind == "binary"]
_CONTINUOUS_COLUMNS = [i for i, info in enumerate(ATTRIBUTES) if info.kind == "continuous"]

# The gates of issue 3 part 2, on held-out renders.
GATES = {"binary_accuracy": 0.95, "continuous_r2": 0.9, "mean_iou": 0.8,
         "median_angle_error_deg": 3.0, "median_translation_error_px": 1.0}


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """Everything that decides a scorer training run."""

    steps: int = 2000
    batch_size: int = 32
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    augment: bool = True
    channels: tuple[int, ...] = (16, 32, 64, 96, 128)
    hidden: int = 256


# -- augmentation ----------------------------------------------------------------------------------

def _uniform(generator: torch.Generator, batch: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(batch, generator=generator)


def _chosen(generator: torch.Generator, batch: int, probability: float) -> torch.Tensor:
    return torch.rand(batch, generator=generator) < probability


def _blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of images [B, 3, H, W], a sigma (pixels) per image [B]."""
    batch, channels, height, width = images.shape
    offsets = torch.arange(-2, 3, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets[None] / sigma[:, None].clamp(min=1e-3)) ** 2)  # [B, 5]
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(channels, dim=0)  # [B*3, 5]
    flat = images.reshape(1, batch * channels, height, width)
    flat = nn.functional.pad(flat, (2, 2, 2, 2), mode="replicate")
    flat = nn.functional.conv2d(flat, kernel.view(-1, 1, 1, 5), groups=batch * channels)
    flat = nn.functional.conv2d(flat, kernel.view(-1, 1, 5, 1), groups=batch * channels)
    return flat.view(batch, channels, height, width)


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Randomly degraded copies of images [B, 3, H, W] in [-1, 1]; geometry is left unchanged."""
    batch = images.shape[0]
    x = images
    # Colour jitter, kept small: skin tone, hair colour and background hue are read from colour.
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    contrast = _uniform(generator, batch, 0.9, 1.1).view(-1, 1, 1, 1)
    brightness = _uniform(generator, batch, -0.06, 0.06).view(-1, 1, 1, 1)
    gain = (0.96 + 0.08 * torch.rand(batch, 3, 1, 1, generator=generator))
    x = ((x - mean) * contrast + mean) * gain + brightness
    blurred = _chosen(generator, batch, 0.5)
    if blurred.any():
        sigma = _uniform(generator, int(blurred.sum()), 0.3, 1.0)
        x = x.clone()
        x[blurred] = _blur(x[blurred], sigma)
    resampled = _chosen(generator, batch, 0.25)
    if resampled.any():
        size = int(torch.randint(32, 57, (1,), generator=generator))
        small = nn.functional.interpolate(x[resampled], size=(size, size), mode="bilinear",
                                          antialias=True, align_corners=False)
        x = x.clone()
        x[resampled] = nn.functional.interpolate(small, size=(RESOLUTION, RESOLUTION),
                                                 mode="bilinear", align_corners=False)
    noise_std = _uniform(generator, batch, 0.0, 0.05) * _chosen(generator, batch, 0.5)
    x = x + noise_std.view(-1, 1, 1, 1) * torch.randn(x.shape, generator=generator)
    quantised = _chosen(generator, batch, 0.5).view(-1, 1, 1, 1)
    levels = 2.0 ** _uniform(generator, batch, 5.0, 8.0).view(-1, 1, 1, 1)
    x = torch.where(quantised, torch.round((x + 1) * 0.5 * levels) / levels * 2 - 1, x)
    return x.clamp(-1.0, 1.0)


# -- data ------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Batch:
    """Rendered faces and the targets of every head."""

    images: torch.Tensor  # [B, 3, 64, 64]
    attributes: torch.Tensor  # [B, len(ATTRIBUTES)] (binary as 0 / 1)
    pose: torch.Tensor  # [B, 3]: angle (degrees), tx, ty
    masks: torch.Tensor  # [B, 64, 64] region ids


def render_batch(seed: int, batch_size: int) -> Batch:
    """`batch_size` faces, the first half aligned and the rest unaligned, from `seed`."""
    aligned = sample_params(2 * seed, batch_size // 2, aligned=True)
    unaligned = sample_params(2 * seed + 1, batch_size - batch_size // 2, aligned=False)
    outputs = [render(aligned), render(unaligned)]
    return Batch(
        images=torch.cat([o.images for o in outputs]),
        attributes=torch.cat([aligned.attribute_values(), unaligned.attribute_values()]),
        pose=torch.cat([aligned.pose_values(), unaligned.pose_values()]),
        masks=torch.cat([o.masks for o in outputs]),
    )


def held_out_renders(n: int, seed: int = HELD_OUT_SEED) -> Batch:
    """`n` held-out faces (half aligned, half unaligned) from seeds training never uses."""
    if seed < HELD_OUT_SEED:
        raise ValueError(f"held-out seeds start at {HELD_OUT_SEED}; got {seed}")
    return render_batch(seed, n)


# -- training --------------------------------------------------------------------------------------

def _loss(net: ToyFacesNet, batch: Batch, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    output = net(images)
    binary = nn.functional.binary_cross_entropy_with_logits(
        output.binary_logits, batch.attributes[:, _BINARY_COLUMNS])
    continuous = nn.functional.mse_loss(output.continuous, batch.attributes[:, _CONTINUOUS_COLUMNS])
    pose = nn.functional.mse_loss(output.pose, pose_targets(batch.pose))
    regions = nn.functional.cross_entropy(output.region_logits, batch.masks)
    # Weights bring each term to about the same size when its gate is just met.
    total = binary + 20.0 * continuous + 10.0 * pose + regions
    parts = {"binary": binary.item(), "continuous": continuous.item(), "pose": pose.item(),
             "regions": regions.item()}
    return total, parts


def warmup_cosine_schedule(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The toy networks' learning-rate schedule: linear warm-up (100 steps at most, a tenth of a
    short run), then cosine decay to 2 % of the base rate at `steps`."""
    warmup = min(100, steps // 10 + 1)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, steps - warmup)
        return 0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * t))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def step_logger(steps: int, start: float, log: Callable[[str], None],
                every: int = 100) -> Callable[[int, dict[str, float]], None]:
    """A training-progress callback: logs the step, its values and the seconds since `start`
    every `every` steps and at the last one (the toy networks' trainers share it)."""
    def progress(step: int, values: dict[str, float]) -> None:
        if step % every == 0 or step == steps - 1:
            text = " ".join(f"{k} {v:.4f}" for k, v in values.items())
            log(f"step {step + 1}/{steps} {text} ({time.monotonic() - start:.0f} s)")
    return progress


def train_scorer_net(config: TrainingConfig = TrainingConfig(),
                     progress: Callable[[int, dict[str, float]], None] | None = None) -> ToyFacesNet:
    """Train a `ToyFacesNet` from scratch on fresh renders; deterministic in `config.seed`."""
    if config.steps < 1:
        raise ValueError(f"steps must be at least 1; got {config.steps}")
    torch.manual_seed(config.seed)
    net = ToyFacesNet(channels=config.channels, hidden=config.hidden)
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    scheduler = warmup_cosine_schedule(optimizer, config.steps)
    augment_generator = torch.Generator().manual_seed(config.seed)
    net.train()
    for step in range(config.steps):
        batch = render_batch(config.seed * 1_000_003 + step, config.batch_size)
        images = augment(batch.images, augment_generator) if config.augment else batch.images
        loss, parts = _loss(net, batch, images)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if progress is not None:
            progress(step, {"loss": loss.item(), **parts})
    return net.eval().requires_grad_(False)


# -- measuring -------------------------------------------------------------------------------------

def r_squared(predicted: np.ndarray, target: np.ndarray) -> float:
    """Coefficient of determination of `predicted` against `target` (both [N])."""
    residual = float(np.sum((target - predicted) ** 2))
    total = float(np.sum((target - target.mean()) ** 2))
    return 1.0 - residual / total


def region_iou(predicted: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """IoU of each region over a whole set of masks [N, H, W] (regions absent from both: NaN)."""
    ious = {}
    for index, name in enumerate(REGIONS):
        p, t = predicted == index, target == index
        union = int((p | t).sum())
        ious[name] = float((p & t).sum()) / union if union else float("nan")
    return ious


def measure(predictions: Predictions, batch: Batch) -> dict[str, object]:
    """The held-out figures of issue 3 part 2, with pass/fail per gate."""
    figures: dict[str, object] = {}
    truth = batch.attributes.numpy()
    accuracy = {}
    for column, (index, name) in enumerate(zip(_BINARY_COLUMNS, BINARY)):
        decided = predictions.binary_logits[:, column].numpy() > 0
        accuracy[name] = float(np.mean(decided == (truth[:, index] > 0.5)))
    r2 = {name: r_squared(predictions.continuous[:, column].numpy(), truth[:, index])
          for column, (index, name) in enumerate(zip(_CONTINUOUS_COLUMNS, CONTINUOUS))}
    ious = region_iou(predictions.masks, batch.masks)
    present = [v for v in ious.values() if not math.isnan(v)]
    angle_error = angle_difference(predictions.pose[:, 0], batch.pose[:, 0])
    shift_error = (predictions.pose[:, 1:] - batch.pose[:, 1:]).norm(dim=1) * RESOLUTION
    unaligned = slice(batch.images.shape[0] // 2, None)  # render_batch puts the unaligned half last
    figures.update(
        binary_accuracy=accuracy, continuous_r2=r2, region_iou=ious,
        mean_iou=float(np.mean(present)),
        median_angle_error_deg=float(angle_error.median()),
        median_angle_error_deg_unaligned=float(angle_error[unaligned].median()),
        median_translation_error_px=float(shift_error.median()),
        median_translation_error_px_unaligned=float(shift_error[unaligned].median()),
    )
    figures["passed"] = {
        "binary_accuracy": min(accuracy.values()) >= GATES["binary_accuracy"],
        "continuous_r2": min(r2.values()) >= GATES["continuous_r2"],
        "mean_iou": figures["mean_iou"] >= GATES["mean_iou"],
        "median_angle_error_deg": figures["median_angle_error_deg"] <= GATES["median_angle_error_deg"],
        "median_translation_error_px":
            figures["median_translation_error_px"] <= GATES["median_translation_error_px"],
    }
    return figures


def measure_held_out(predictor: ToyFacesPredictor, n: int = 2000, seed: int = HELD_OUT_SEED,
                     degrade: bool = False) -> dict[str, object]:
    """`measure` on `n` fresh held-out renders (optionally augmented, as a robustness check)."""
    batch = held_out_renders(n, seed)
    images = augment(batch.images, torch.Generator().manual_seed(seed)) if degrade else batch.images
    return measure(predictor.predict(images), batch)


def train_and_save(out_dir: str | Path, config: TrainingConfig, n_held_out: int = 2000,
                   log: Callable[[str], None] = print) -> tuple[Path, dict[str, object]]:
    """Train, measure on held-out renders, and write `scorers.pt` to `out_dir`."""
    start = time.monotonic()
    net = train_scorer_net(config, step_logger(config.steps, start, log))
    figures = measure_held_out(ToyFacesPredictor(net), n_held_out)
    training = {**dataclasses.asdict(config), "channels": list(config.channels),
                "seconds": round(time.monotonic() - start, 1), "held_out": figures}
    path = Path(out_dir) / "scorers.pt"
    save_scorer_net(net, path, training=plain_values(training))
    return path, figures


def plain_values(value):
    """`value` as plain Python values (what torch.load(weights_only=True) accepts); numbers as floats.

    The toy networks' weights files record their training with it (scorers.pt, toyclip.pt).
    """
    if isinstance(value, dict):
        return {str(k): plain_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_values(v) for v in value]
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    return float(value)
