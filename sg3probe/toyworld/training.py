"""Supervised training of the toy StyleGAN3 generators: z -> render of the face z stands for.

Adversarial training is far too slow on a 2-core CPU, so the generator regresses onto the
known target of each latent (`latents.target_images`), with a multi-scale L1 loss plus an L1 on
image gradients (sharp edges), and, on the input layer's transform, the pose of the face (so that
pose is carried by the Fourier-feature input, as in NVIDIA's unaligned models). The rest follows
NVIDIA's training loop: Adam (lr 0.01, betas (0.9, 0.99): see TrainingConfig), equalised
learning rates (mapping x0.01), `update_emas=True` so that w_avg and each layer's magnitude EMA track the data, and an EMA copy of
the weights (G_ema), which is what gets shipped.

Files: `<workdir>/state.pt` holds everything needed to resume (G, G_ema, optimizer, step,
history); `out` receives G_ema through `save_generator`, with the noise matrix Q in metadata.
Each step's latents come from a generator seeded with (seed, step), so a resumed run gives the
same results as an uninterrupted one.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TextIO

import torch
import torch.nn.functional as F

from sg3probe.checkpoints.native import load_native, save_generator
from sg3probe.errors import ConfigError
from sg3probe.models.architecture import GeneratorConfig, stylegan3_config
from sg3probe.models.generator import Generator
from sg3probe.toyworld.latents import (METADATA_KEY, NOISE_SEED, noise_matrix, target_images, target_renders,
                                       toy_noise)
from sg3probe.toyworld.attributes import attributes_from_noise
from sg3probe.toyworld.render import REGIONS, RESOLUTION

STATE_FORMAT = "sg3probe.toytrain"
STATE_FILE = "state.pt"
HISTORY_FILE = "history.tsv"
VARIANTS = ("aligned", "unaligned")


class TrainingStateError(ConfigError):
    """A training folder that cannot be resumed with the requested configuration."""


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that determines a toy generator's training run (a resume must match it)."""

    variant: str = "aligned"
    seed: int = 0
    batch: int = 16
    # Generator: StyleGAN3-T, 64 px, num_ws = num_layers + 2.
    z_dim: int = 128
    w_dim: int = 128
    mapping_layers: int = 2
    channel_base: int = 512
    channel_max: int = 64
    num_layers: int = 14
    margin_size: int = 4
    noise_seed: int = NOISE_SEED
    # Optimiser and EMA (NVIDIA's names).
    lr: float = 0.01  # 5x NVIDIA's: a regression has no adversary to destabilise
    beta1: float = 0.9  # NVIDIA uses 0 for GANs; momentum fits a regression faster
    beta2: float = 0.99
    ema_kimg: float = 2.0
    ema_rampup: float | None = 0.05
    # Loss weights.
    pyramid_levels: int = 3  # L1 also on 2x, 4x, 8x average-pooled images
    edge_weight: float = 1.0  # L1 between horizontal/vertical pixel differences
    input_pose_weight: float = 1.0  # squared error of the input layer's transform vs the pose
    # L1 inside the small parts' masks (eyes, brows, mouth, eyeglasses; dilated by 1 px), as a
    # mean over those pixels. They cover about 3 % of an image, so the whole-image L1 hardly sees
    # a closed mouth turning into a smile; this term weighs them like a whole image (0: off).
    part_weight: float = 0.0
    # Extra factor on the mapping network's learning rate, on top of its equalised-lr multiplier
    # (NVIDIA's 0.01, kept in the architecture so that checkpoints stay NVIDIA-like). At 1 the
    # mapping hardly moves from its random init in a CPU run, and W keeps the attributes only
    # in a scrambled form (see docs/toyworld.md); 100 trains it at the synthesis' rate.
    mapping_lr_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}; got {self.variant!r}")
        if self.batch < 1:
            raise ValueError(f"batch must be a positive number of images; got {self.batch}")

    @property
    def aligned(self) -> bool:
        return self.variant == "aligned"

    def generator_config(self) -> GeneratorConfig:
        """The generator's config; the magnitude EMA follows NVIDIA's 0.5 ** (batch / 20k)."""
        return stylegan3_config(
            "stylegan3-t", img_resolution=RESOLUTION, z_dim=self.z_dim, w_dim=self.w_dim,
            mapping_layers=self.mapping_layers, channel_base=self.channel_base,
            channel_max=self.channel_max, num_layers=self.num_layers, margin_size=self.margin_size,
            num_fp16_res=0, magnitude_ema_beta=0.5 ** (self.batch / 20000))


@dataclass
class TrainingResult:
    """Where a run ended: its step, images seen, recent loss and the files written."""

    step: int
    images_seen: int
    loss: float
    weights_path: Path
    state_path: Path
    history: list[dict[str, float]]


def reconstruction_loss(images: torch.Tensor, targets: torch.Tensor, pyramid_levels: int,
                        edge_weight: float) -> dict[str, torch.Tensor]:
    """L1 at full and `pyramid_levels` coarser scales, plus L1 of pixel differences (edges)."""
    terms = {"l1": (images - targets).abs().mean()}
    dx = lambda x: x[..., :, 1:] - x[..., :, :-1]  # noqa: E731
    dy = lambda x: x[..., 1:, :] - x[..., :-1, :]  # noqa: E731
    terms["edge"] = edge_weight * ((dx(images) - dx(targets)).abs().mean() + (dy(images) - dy(targets)).abs().mean())
    coarse_images, coarse_targets, pyramid = images, targets, images.new_zeros([])
    for _ in range(pyramid_levels):
        coarse_images, coarse_targets = F.avg_pool2d(coarse_images, 2), F.avg_pool2d(coarse_targets, 2)
        pyramid = pyramid + (coarse_images - coarse_targets).abs().mean()
    terms["pyramid"] = pyramid
    return terms


SMALL_PARTS = ("eyes", "brows", "mouth", "eyeglasses")


def part_loss(images: torch.Tensor, targets: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mean L1 over the pixels of the small parts (`SMALL_PARTS`, masks dilated by 1 px)."""
    ids = torch.tensor([REGIONS.index(name) for name in SMALL_PARTS], device=masks.device)
    inside = torch.isin(masks, ids).unsqueeze(1).to(images.dtype)  # [B, 1, H, W]
    inside = F.max_pool2d(inside, 3, stride=1, padding=1)
    count = inside.sum() * images.shape[1]
    return ((images - targets).abs() * inside).sum() / count.clamp(min=1)


def input_pose_loss(input_styles: torch.Tensor, noise: torch.Tensor, aligned: bool) -> torch.Tensor:
    """Squared error of the input transform (r_c, r_s, t_x, t_y) [B, 4] against the true pose.

    The input layer maps image coordinates x to R(x - t), exactly as the renderer maps pixels into
    the face frame, so the pose (angle a, tx, ty in image widths) is t = (cos a, sin a, tx, ty).
    Translations are weighted x5 so that +-0.12 counts about as much as the rotation.
    """
    params = attributes_from_noise(noise.cpu(), aligned)
    radians = params.angle.to(input_styles.device) * (math.pi / 180)
    rotation = torch.stack([radians.cos(), radians.sin()], dim=1)  # [B, 2]
    translation = torch.stack([params.tx, params.ty], dim=1).to(input_styles.device)  # [B, 2]
    return ((input_styles[:, :2] - rotation).square().sum(dim=1).mean()
            + 25 * (input_styles[:, 2:] - translation).square().sum(dim=1).mean())


def batch_latents(config: TrainingConfig, step: int) -> torch.Tensor:
    """The latents z [batch, z_dim] of one step, from an RNG seeded with (seed, step)."""
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
    return torch.randn(config.batch, config.z_dim, generator=generator)


@torch.no_grad()
def _initialise_output_bias(generator: Generator, config: TrainingConfig, matrix: torch.Tensor) -> None:
    """Start ToRGB's bias at the mean colour of the data.

    With output_scale 0.25 and Adam's steps of about lr, the bias would otherwise need hundreds
    of steps just to reach the mean colour; a GAN can afford them, a short supervised run cannot.
    """
    z = torch.randn(256, config.z_dim, generator=torch.Generator().manual_seed(config.seed + 7919))
    mean_colour = target_images(z, config.aligned, matrix).mean(dim=(0, 2, 3))  # [3]
    torgb = getattr(generator.synthesis, generator.synthesis.layer_names[-1])
    torgb.bias.copy_(mean_colour / generator.config.output_scale)


@torch.no_grad()
def _calibrate_input_gains(generator: Generator, config: TrainingConfig, passes: int = 8) -> None:
    """Start every layer's magnitude EMA at the magnitude of its actual input.

    The EMA starts at 1 and NVIDIA's beta (about 0.9995 per step here) needs thousands of steps
    to reach the true magnitudes, which are far below 1 in the upper layers; until then the
    input gains are too small, the signal fades layer by layer and the output is a flat colour
    that no gradient can shape. A GAN trains long enough to wait; a short supervised run cannot.
    This is what the conformance fixtures' warm-up does too: a few passes with a fast EMA.
    """
    layers = [getattr(generator.synthesis, name) for name in generator.synthesis.layer_names]
    betas = [layer.magnitude_ema_beta for layer in layers]
    try:
        for layer in layers:
            layer.magnitude_ema_beta = 0.5
        for index in range(passes):
            z = torch.randn(config.batch, config.z_dim, generator=torch.Generator().manual_seed(config.seed + 31 + index))
            generator.synthesis(generator.mapping(z, update_emas=True), update_emas=True)
    finally:
        for layer, beta in zip(layers, betas):
            layer.magnitude_ema_beta = beta


def _parameter_groups(generator: Generator, config: TrainingConfig) -> list[dict[str, Any]]:
    """One Adam group, or two when the mapping network learns at `mapping_lr_scale` x lr."""
    if config.mapping_lr_scale == 1.0:
        return [{"params": list(generator.parameters()), "lr": config.lr}]
    mapping = list(generator.mapping.parameters())
    mapping_ids = {id(p) for p in mapping}
    rest = [p for p in generator.parameters() if id(p) not in mapping_ids]
    return [{"params": rest, "lr": config.lr}, {"params": mapping, "lr": config.lr * config.mapping_lr_scale}]


def _ema_beta(config: TrainingConfig, images_seen: int) -> float:
    """NVIDIA's EMA beta per step: half-life ema_kimg, ramped up over the first images."""
    ema_images = config.ema_kimg * 1000
    if config.ema_rampup is not None:
        ema_images = min(ema_images, images_seen * config.ema_rampup)
    return 0.5 ** (config.batch / max(ema_images, 1e-8))


@torch.no_grad()
def _update_ema(generator: Generator, generator_ema: Generator, beta: float) -> None:
    for p_ema, p in zip(generator_ema.parameters(), generator.parameters()):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(generator_ema.buffers(), generator.buffers()):
        b_ema.copy_(b)


def _save_atomic(payload: dict[str, Any], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _write_history(history: list[dict[str, float]], path: Path) -> None:
    if not history:
        return
    columns = list(history[0])
    lines = ["\t".join(columns)] + ["\t".join(f"{row[c]:.6g}" for c in columns) for row in history]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)


def weights_metadata(config: TrainingConfig, step: int, images_seen: int, seconds: float,
                     loss: float) -> dict[str, Any]:
    """The toy-world entry of a shipped generator's metadata: variant, Q, training record."""
    return {METADATA_KEY: {
        "variant": config.variant,
        "aligned": config.aligned,
        "noise_seed": config.noise_seed,
        "noise_matrix": noise_matrix(config.z_dim, config.noise_seed).tolist(),  # [z_dim, NOISE_DIM]
        "objective": "supervised: z -> render(attributes_from_noise(z @ noise_matrix)); "
                     "multi-scale L1 + edge L1 + input-transform pose loss"
                     + (" + small-part L1" if config.part_weight else ""),
        "step": step,
        "images_seen": images_seen,
        "training_seconds": round(seconds, 1),
        "loss": loss,
        "training_config": dataclasses.asdict(config),
    }}


def train(config: TrainingConfig, workdir: str | Path, steps: int, *, out: str | Path | None = None,
          resume: bool = False, init_from: str | Path | None = None, device: str | None = None,
          checkpoint_seconds: float = 300.0, log_every: int = 20, log: TextIO | None = None,
          should_stop: Callable[[], bool] | None = None, lr: float | None = None) -> TrainingResult:
    """Train until `steps` total steps (or `should_stop()`), checkpointing every few minutes.

    workdir: training state (resumable); out: shipped G_ema weights (default workdir/generator.pt).
    resume: continue from workdir/state.pt if it exists. init_from: a generator checkpoint with
    the same config whose weights start a fresh run (e.g. unaligned from aligned).
    lr: a new learning rate from this step on (a step of the schedule; `config.lr` is the initial
    one); the changes are kept in the state and the weights' metadata as `lr_changes`.
    """
    log = log or sys.stderr
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    state_path = workdir / STATE_FILE
    out = Path(out) if out is not None else workdir / "generator.pt"
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    matrix = noise_matrix(config.z_dim, config.noise_seed)

    with torch.random.fork_rng(devices=[]):  # the initial weights, without touching the global RNG
        torch.manual_seed(config.seed)
        generator = Generator(config.generator_config()).train().requires_grad_(True)
    optimizer = torch.optim.Adam(_parameter_groups(generator, config), betas=(config.beta1, config.beta2), eps=1e-8)
    step, images_seen, seconds, history, lr_changes = 0, 0, 0.0, [], []
    generator_ema = copy.deepcopy(generator).eval().requires_grad_(False)

    if state_path.exists() and not resume:
        raise TrainingStateError(f"{state_path} exists: add --resume (resume=True from Python) to continue that "
                                 "training, or give another --workdir")
    if resume and state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if state.get("format") != STATE_FORMAT:
            raise TrainingStateError(f"{state_path} is not a toy training state")
        saved_config = {**dataclasses.asdict(TrainingConfig()), **state["training_config"]}  # older states lack new fields
        if saved_config != dataclasses.asdict(config):
            changed = sorted(k for k, v in dataclasses.asdict(config).items() if saved_config.get(k) != v)
            raise TrainingStateError(f"{state_path} was trained with other settings ({', '.join(changed)}); "
                                     "resume with the same options or use another work folder")
        generator.load_state_dict(state["generator"])
        generator_ema.load_state_dict(state["generator_ema"])
        optimizer.load_state_dict(state["optimizer"])
        step, images_seen, seconds, history = state["step"], state["images_seen"], state["seconds"], state["history"]
        lr_changes = list(state.get("lr_changes", []))
        print(f"resumed {config.variant} from {state_path} at step {step} ({images_seen} images)", file=log, flush=True)
    elif init_from is not None:
        source, _ = load_native(init_from)
        if source.config != generator.config:
            raise TrainingStateError(f"{init_from} has another generator config than this run; cannot start from it")
        generator.load_state_dict(source.state_dict())
        generator_ema.load_state_dict(source.state_dict())
        print(f"starting {config.variant} from the weights of {init_from}", file=log, flush=True)

    else:
        _initialise_output_bias(generator, config, matrix)
        _calibrate_input_gains(generator, config)
        generator_ema.load_state_dict(generator.state_dict())

    current_lr = optimizer.param_groups[0]["lr"]
    if lr is not None and lr != current_lr:
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr"] / current_lr  # the mapping's group keeps its ratio
        lr_changes.append({"step": step, "lr": lr})
        print(f"learning rate {current_lr:g} -> {lr:g} from step {step}", file=log, flush=True)

    generator.to(device)
    generator_ema.to(device)

    def checkpoint(loss: float) -> None:
        cpu = lambda sd: {k: v.detach().cpu() for k, v in sd.items()}  # noqa: E731
        _save_atomic({
            "format": STATE_FORMAT, "training_config": dataclasses.asdict(config), "step": step,
            "images_seen": images_seen, "seconds": seconds, "history": history,
            "generator": cpu(generator.state_dict()), "generator_ema": cpu(generator_ema.state_dict()),
            "optimizer": optimizer.state_dict(), "lr_changes": lr_changes,
        }, state_path)
        metadata = weights_metadata(config, step, images_seen, seconds, loss)
        metadata[METADATA_KEY]["lr_changes"] = lr_changes
        save_generator(generator_ema, out, metadata=metadata)
        _write_history(history, workdir / HISTORY_FILE)
        print(f"checkpoint: step {step} -> {out}", file=log, flush=True)

    sums: dict[str, float] = {}
    window_start, window_steps, last_checkpoint = time.perf_counter(), 0, time.perf_counter()
    loss_value = history[-1]["loss"] if history else float("nan")
    while step < steps and not (should_stop and should_stop()):
        step_start = time.perf_counter()
        z = batch_latents(config, step)
        renders = target_renders(z, config.aligned, matrix)
        targets = renders.images.to(device)
        ws = generator.mapping(z.to(device), update_emas=True)
        styles = generator.synthesis.styles(ws)
        images = generator.synthesis(styles=styles, update_emas=True)
        terms = reconstruction_loss(images, targets, config.pyramid_levels, config.edge_weight)
        if config.part_weight:
            terms["parts"] = config.part_weight * part_loss(images, targets, renders.masks.to(device))
        if config.input_pose_weight:
            pose = input_pose_loss(styles["input"], toy_noise(z, matrix), config.aligned)
            terms["pose"] = config.input_pose_weight * pose
        loss = sum(terms.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        images_seen += config.batch
        _update_ema(generator, generator_ema, _ema_beta(config, images_seen))
        seconds += time.perf_counter() - step_start

        for name, value in [("loss", loss), *terms.items()]:
            sums[name] = sums.get(name, 0.0) + float(value.detach())
        window_steps += 1
        if window_steps == log_every or step == steps:
            elapsed = time.perf_counter() - window_start
            row = {"step": step, "images": images_seen, "seconds": seconds,
                   **{name: total / window_steps for name, total in sums.items()}}
            history.append(row)
            loss_value = row["loss"]
            parts = " ".join(f"{name} {row[name]:.4f}" for name in sums)
            print(f"{config.variant} step {step} kimg {images_seen / 1000:.1f} {parts} "
                  f"{window_steps * config.batch / elapsed:.1f} img/s", file=log, flush=True)
            sums, window_start, window_steps = {}, time.perf_counter(), 0
        if time.perf_counter() - last_checkpoint >= checkpoint_seconds:
            checkpoint(loss_value)
            last_checkpoint = time.perf_counter()
    checkpoint(loss_value)
    return TrainingResult(step, images_seen, loss_value, out, state_path, history)
