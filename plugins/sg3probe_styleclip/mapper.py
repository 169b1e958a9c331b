"""StyleCLIP latent mapper in W+ (Patashnik, Wu et al. 2021; spec: analyses.md section 4).

A `LevelsMapper` holds one `Mapper` per group of ws rows (coarse, medium, fine; SG3-ed's slices
[0:5], [5:8], [8:16] for 16 rows, scaled to other row counts); a group can be switched off, and
then its rows are not edited. The edit is w_hat = w + 0.1 * M(w), and training minimises

    lambda_clip * (1 - cos(E_image(G(w_hat)), t)) + lambda_l2 * MSE(w_hat, w)
        + lambda_id * (1 - cos(ID(G(w_hat)), ID(G(w))))

over latents of the model, with t the unit text embedding of the target and ID a pluggable
identity feature extractor (`identity.py`). With `MapperSettings.ema_decay` > 0 the edits use an
exponential moving average of the weights over the training steps, which evens out the last
steps' noise. `train_mapper` saves checkpoints (the mapper that edits, the training weights,
optimiser, step, random state, loss history) and resumes from the last one.
"""
from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sg3probe.errors import CheckpointError, ConfigError

GROUPS = ("coarse", "medium", "fine")
EDIT_SCALE = 0.1  # w_hat = w + 0.1 * M(w)
CHECKPOINT_FORMAT = "sg3probe-styleclip-mapper"


def level_slices(num_ws: int) -> dict[str, slice]:
    """ws rows of each group: [0:5], [5:8], [8:16] for 16 rows, the same fractions for other counts."""
    first = max(1, round(5 * num_ws / 16))
    second = max(first + 1, round(8 * num_ws / 16)) if num_ws > 2 else first
    second = min(second, num_ws)
    return {"coarse": slice(0, first), "medium": slice(first, second), "fine": slice(second, num_ws)}


class PixelNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) over the last axis."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """A linear layer with an equalised learning rate: weights stored as N(0, 1) / lr_mul and scaled
    by lr_mul / sqrt(in_features) at run time; bias stored / lr_mul. lr_mul < 1 slows the layer."""

    def __init__(self, in_features: int, out_features: int, lr_mul: float = 1.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.lr_mul = lr_mul
        self.scale = lr_mul / math.sqrt(in_features)

    def extra_repr(self) -> str:
        return f"in_features={self.weight.shape[1]}, out_features={self.weight.shape[0]}, lr_mul={self.lr_mul}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class Mapper(nn.Module):
    """PixelNorm, then `layers` x (EqualLinear, leaky ReLU 0.2 with gain sqrt 2), width w_dim."""

    def __init__(self, w_dim: int, layers: int = 4, lr_mul: float = 0.01) -> None:
        super().__init__()
        self.norm = PixelNorm()
        self.layers = nn.ModuleList(EqualLinear(w_dim, w_dim, lr_mul) for _ in range(layers))

    def forward(self, w: torch.Tensor) -> torch.Tensor:  # [..., w_dim]
        x = self.norm(w)
        for layer in self.layers:
            x = F.leaky_relu(layer(x), 0.2) * math.sqrt(2.0)
        return x


def check_groups(groups: tuple[str, ...] | list[str]) -> None:
    """A ConfigError unless `groups` names one or more of GROUPS."""
    if not groups or set(groups) - set(GROUPS):
        raise ConfigError(f"mapper groups {list(groups)}: choose one or more of {', '.join(GROUPS)}")


class LevelsMapper(nn.Module):
    """One Mapper per enabled group of ws rows; M(ws) [B, num_ws, w_dim] is zero on disabled rows."""

    def __init__(self, w_dim: int, num_ws: int, groups: tuple[str, ...] = GROUPS, layers: int = 4,
                 lr_mul: float = 0.01) -> None:
        super().__init__()
        check_groups(groups)
        self.w_dim, self.num_ws = w_dim, num_ws
        self.slices = {name: part for name, part in level_slices(num_ws).items()
                       if name in groups and part.stop > part.start}
        self.mappers = nn.ModuleDict({name: Mapper(w_dim, layers, lr_mul) for name in self.slices})

    def config(self) -> dict:
        first = next(iter(self.mappers.values()))
        return {"w_dim": self.w_dim, "num_ws": self.num_ws, "groups": list(self.mappers),
                "layers": len(first.layers), "lr_mul": first.layers[0].lr_mul}

    def forward(self, ws: torch.Tensor) -> torch.Tensor:  # ws [B, num_ws, w_dim]
        parts = []
        for name in GROUPS:
            part = level_slices(self.num_ws)[name]
            rows = ws[:, part]
            parts.append(self.mappers[name](rows) if name in self.mappers else torch.zeros_like(rows))
        return torch.cat(parts, dim=1)

    def edit(self, ws: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
        """w_hat = w + strength * 0.1 * M(w); strength 1 is the trained edit, 0 the original."""
        return ws + strength * EDIT_SCALE * self(ws)


# ----- training -----------------------------------------------------------------------------------

@dataclass
class MapperSettings:
    """The mapper's training recipe (SG3-ed's loss weights by default)."""

    steps: int = 2400  # about 5 min on 2 CPU cores for a toy generator
    batch_size: int = 4
    learning_rate: float = 0.5  # Adam, on the equalised-lr parameters (StyleCLIP's value)
    lambda_clip: float = 1.0
    lambda_l2: float = 0.3
    lambda_id: float = 0.06
    groups: tuple[str, ...] = GROUPS
    # > 0: the edits use the weights' exponential moving average, decay min(ema_decay, (1 + t) / (10 + t))
    # after step t (0.995 averages about the last 200 steps); 0: the last step's weights.
    ema_decay: float = 0.0
    checkpoint_every: int = 50  # steps
    seed: int = 0

    def check(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise ConfigError("mapper steps, batch_size and checkpoint_every must be >= 1")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"mapper ema_decay {self.ema_decay}: give a number in [0, 1) (0: no averaging)")
        check_groups(self.groups)


@dataclass
class TrainedMapper:
    """A trained mapper and its loss history (one row per step: total, clip, l2, id)."""

    mapper: LevelsMapper  # the averaged weights when settings.ema_decay > 0
    losses: np.ndarray  # [steps, 4]
    seconds: float  # training time of this call (not of resumed earlier calls)
    resumed_from: int = 0  # the step the last checkpoint held


def mapper_loss(G, model, mapper: LevelsMapper, ws: torch.Tensor, target: torch.Tensor, settings: MapperSettings,
                identity: Callable | None, reference: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss of one batch ws [B, num_ws, w_dim] and its parts [clip, l2, id] (detached).

    reference [B, F]: the identity features of the unedited images (computed here when None).
    """
    edited = mapper.edit(ws)
    images = G.synthesis(edited)
    similarity = model.encode_image(images) @ target  # [B]; both unit norm
    clip = (1 - similarity).mean()
    l2 = F.mse_loss(edited, ws)
    id_term = torch.zeros((), device=ws.device)
    if identity is not None and settings.lambda_id:
        if reference is None:
            with torch.no_grad():
                reference = identity(G.synthesis(ws))
        id_term = (1 - F.cosine_similarity(identity(images), reference, dim=1)).mean()
    total = settings.lambda_clip * clip + settings.lambda_l2 * l2 + settings.lambda_id * id_term
    return total, torch.stack([clip, l2, id_term]).detach()


def _settings_record(settings: MapperSettings) -> dict:
    """The settings as a checkpoint's meta records them."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()}


def _without_steps(meta: dict | None) -> dict | None:
    """A checkpoint's meta without the step count (a finished mapper trains on when asked for more steps),
    its settings completed with the defaults of settings added since it was written (their default is
    what it was trained with)."""
    if not isinstance(meta, dict):
        return meta
    settings = {k: v for k, v in {**_settings_record(MapperSettings()), **meta.get("settings", {})}.items()
                if k != "steps"}
    return {**meta, "settings": settings}


def _checkpoint_path(folder: Path) -> Path:
    return folder / "mapper.pt"


def _average_into(average: LevelsMapper, mapper: LevelsMapper, decay: float) -> None:
    """average <- decay * average + (1 - decay) * mapper, parameter by parameter."""
    with torch.no_grad():
        for kept, current in zip(average.parameters(), mapper.parameters()):
            kept.lerp_(current, 1.0 - decay)


def save_checkpoint(path: Path, mapper: LevelsMapper, average: LevelsMapper, optimiser, step: int, losses: list,
                    generator, meta: dict) -> None:
    """Write the training state atomically: `state_dict` is the mapper that edits (the averaged one),
    `training_state_dict` the weights the optimiser updates."""
    payload = {"format": CHECKPOINT_FORMAT, "config": mapper.config(), "state_dict": average.state_dict(),
               "training_state_dict": mapper.state_dict(), "optimiser": optimiser.state_dict(), "step": step,
               "losses": torch.tensor(np.asarray(losses, np.float32).reshape(-1, 4)),
               "rng": generator.get_state(), "meta": meta}
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)


def load_mapper(path: str | Path, device="cpu") -> tuple[LevelsMapper, dict]:
    """A LevelsMapper (eval mode) and the checkpoint's payload from a file written during training."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"mapper checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for a file that is not its own
        raise CheckpointError(f"{path} is not a StyleCLIP mapper checkpoint: torch cannot read it "
                              f"({type(error).__name__}); give a mapper.pt from `sg3probe run styleclip`") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a StyleCLIP mapper checkpoint (it has no {CHECKPOINT_FORMAT!r} "
                              "format tag); give a mapper.pt from `sg3probe run styleclip`")
    config = payload["config"]
    mapper = LevelsMapper(config["w_dim"], config["num_ws"], tuple(config["groups"]), config["layers"],
                          config["lr_mul"])
    mapper.load_state_dict(payload["state_dict"])
    return mapper.to(device).eval(), payload


def identity_features(G, identity: Callable, latents: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Identity features [N, F] of the unedited images of latents [N, num_ws, w_dim] (no gradients)."""
    parts = []
    with torch.no_grad():
        for start in range(0, len(latents), batch_size):
            parts.append(identity(G.synthesis(latents[start:start + batch_size])))
    return torch.cat(parts)


def train_mapper(G, model, target: np.ndarray | torch.Tensor, latents: torch.Tensor, settings: MapperSettings,
                 folder: str | Path, *, identity: Callable | None = None, progress: Callable | None = None,
                 references: torch.Tensor | None = None, meta: dict | None = None,
                 stop_after: int | None = None) -> TrainedMapper:
    """Train a LevelsMapper towards the unit text embedding `target` [D] on latents [N, num_ws, w_dim].

    The returned mapper is the moving average of the weights when `settings.ema_decay` > 0, else the
    last weights. Batches are drawn from `latents` with a seeded generator; a checkpoint in `folder` is resumed
    (with its optimiser and random state) and rewritten every `checkpoint_every` steps and at the end.
    A finished checkpoint of fewer steps than `settings.steps` trains on, as if never stopped.
    `references` [N, F]: identity features of the unedited latents (`identity_features`), computed
    here when not given. `stop_after` ends the call after that many steps (for tests of resumption).
    """
    settings.check()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"settings": _settings_record(settings), **(meta or {})}
    device = latents.device
    target = torch.as_tensor(np.asarray(target), dtype=torch.float32, device=device)
    path = _checkpoint_path(folder)
    generator = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)
    mapper = LevelsMapper(G.w_dim, G.num_ws, tuple(settings.groups)).to(device)
    optimiser = torch.optim.Adam(mapper.parameters(), lr=settings.learning_rate)
    average = copy.deepcopy(mapper).requires_grad_(False) if settings.ema_decay else mapper
    losses: list = []
    step = 0
    if path.exists():
        previous, payload = load_mapper(path, device)
        if _without_steps(payload.get("meta")) != _without_steps(meta):
            raise CheckpointError(f"the mapper checkpoint {path} was trained with other settings or for another "
                                  "prompt or model; delete it to start again")
        if int(payload["step"]) > settings.steps:
            raise CheckpointError(f"the mapper checkpoint {path} has {int(payload['step'])} steps, more than the "
                                  f"{settings.steps} asked; ask for {int(payload['step'])} or more, or delete it "
                                  "to start again")
        mapper.load_state_dict(payload.get("training_state_dict", payload["state_dict"]))  # older: one set
        average.load_state_dict(previous.state_dict())
        optimiser.load_state_dict(payload["optimiser"])
        step, losses = int(payload["step"]), payload["losses"].tolist()
        generator.set_state(payload["rng"])
    resumed = step
    G.requires_grad_(False)
    if references is None and identity is not None and settings.lambda_id and step < settings.steps:
        references = identity_features(G, identity, latents, settings.batch_size * 8)
    mapper.train()
    started = time.perf_counter()
    bar = progress(total=settings.steps, initial=step, desc="mapper") if progress else None
    while step < settings.steps and (stop_after is None or step - resumed < stop_after):
        index = torch.randint(len(latents), (settings.batch_size,), generator=generator)
        total, parts = mapper_loss(G, model, mapper, latents[index.to(device)], target, settings, identity,
                                   None if references is None else references[index.to(references.device)])
        optimiser.zero_grad(set_to_none=True)
        total.backward()
        optimiser.step()
        step += 1
        if average is not mapper:
            _average_into(average, mapper, min(settings.ema_decay, (1 + step) / (10 + step)))
        losses.append([float(total.detach())] + [float(p) for p in parts])
        if bar is not None:
            bar.update(1)
        if step % settings.checkpoint_every == 0 or step == settings.steps:
            save_checkpoint(path, mapper, average, optimiser, step, losses, generator, meta)
    if bar is not None:
        bar.close()
    if step - resumed and step % settings.checkpoint_every and step != settings.steps:
        save_checkpoint(path, mapper, average, optimiser, step, losses, generator, meta)
    return TrainedMapper(average.eval(), np.asarray(losses, np.float32).reshape(-1, 4), time.perf_counter() - started,
                         resumed)
