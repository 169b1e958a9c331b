"""Measuring text edits on held-out latents: the attribute scorer and the text-image model.

`HeldOut` renders one model's held-out latents, unedited and under an edit (a function of a batch
of ws that returns images), and scores both with the attribute scorer and the text-image model.
The summaries (`target_rates`, `side_effects`) are pure numpy on the scores.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from sg3probe.imaging import to_uint8
from sg3probe_styleclip.prompts import Target

# An edit: ws [b, num_ws, w_dim] -> images [b, C, H, W].
Edit = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Rendered:
    """Scores and text-image embeddings of a set of renders, and the first few as pictures."""

    scores: dict[str, np.ndarray]  # attribute -> [n]
    embeddings: np.ndarray  # [n, D] unit norm
    pictures: np.ndarray  # uint8 [k, H, W, C]


class HeldOut:
    """Held-out latents ws [n, num_ws, w_dim] of one model, rendered and measured under edits."""

    def __init__(self, G, scorer, text_model, ws: torch.Tensor, *, batch_size: int = 32, keep: int = 0) -> None:
        self.G, self.scorer, self.text_model = G, scorer, text_model
        self.ws = torch.as_tensor(ws, dtype=torch.float32, device=G.device)
        self.batch_size, self.keep = batch_size, keep
        self.renders = 0
        self._original: Rendered | None = None

    def __len__(self) -> int:
        return len(self.ws)

    def original(self) -> Rendered:
        if self._original is None:
            self._original = self.measure(lambda ws: self.G.synthesis(ws))
        return self._original

    @torch.no_grad()
    def measure(self, edit: Edit, count: int | None = None) -> Rendered:
        """Render the first `count` (default all) latents through `edit`; score and embed them."""
        count = len(self) if count is None else min(count, len(self))
        scores: list[dict] = []
        embeddings, pictures = [], []
        for start in range(0, count, self.batch_size):
            images = edit(self.ws[start:min(start + self.batch_size, count)])
            self.renders += len(images)
            scores.append({k: np.asarray(v, dtype=np.float64) for k, v in self.scorer.score(images).items()})
            embeddings.append(self.text_model.encode_image(images).float().cpu().numpy())
            if start < self.keep:
                pictures.append(to_uint8(images[:self.keep - start]))
        return Rendered({name: np.concatenate([s[name] for s in scores]) for name in scores[0]},
                        np.concatenate(embeddings),
                        np.concatenate(pictures) if pictures else np.zeros((0, 1, 1, 3), np.uint8))


def target_rates(target: Target, before: np.ndarray, after: np.ndarray) -> dict[str, float]:
    """target_rate: the share of samples not at the target decision before the edit that reach it;
    at_target: the share of all samples at the target after the edit (before: at_target_before)."""
    was, now = target.reached(before), target.reached(after)
    eligible = ~was
    return {"target_rate": float(now[eligible].mean()) if eligible.any() else float("nan"),
            "at_target_before": float(was.mean()), "at_target": float(now.mean()),
            "lost_rate": float((~now[was]).mean()) if was.any() else float("nan"),
            "eligible": int(eligible.sum())}


def decision_thresholds(attributes, scores: dict[str, np.ndarray]) -> dict[str, float]:
    """Where each attribute's decision flips: 0 for a binary logit, the middle of a continuous
    attribute's declared range (the median of `scores` when it declares none)."""
    thresholds = {}
    for attribute in attributes:
        if attribute.kind == "binary":
            thresholds[attribute.name] = 0.0
        elif attribute.value_range is not None:
            thresholds[attribute.name] = float(np.mean(attribute.value_range))
        else:
            thresholds[attribute.name] = float(np.nanmedian(scores[attribute.name]))
    return thresholds


@dataclass
class SideEffect:
    """How often one attribute changed under an edit, two ways."""

    flip_rate: float  # the decision (see decision_thresholds) flipped
    move_rate: float  # the value moved by >= change_std natural stds


def side_effects(target_attribute: str, before: dict[str, np.ndarray], after: dict[str, np.ndarray],
                 thresholds: dict[str, float], natural_std: dict[str, float],
                 change_std: float = 1.0) -> dict[str, SideEffect]:
    """The flip and move rates of every attribute but the target."""
    effects = {}
    for name in before:
        if name == target_attribute:
            continue
        flipped = (before[name] > thresholds[name]) != (after[name] > thresholds[name])
        moved = np.abs(after[name] - before[name]) >= change_std * natural_std[name]
        effects[name] = SideEffect(float(flipped.mean()), float(moved.mean()))
    return effects


def similarity_gain(before: np.ndarray, after: np.ndarray, prompt: np.ndarray) -> float:
    """Mean over samples of cos(E(edited), t) - cos(E(original), t); embeddings [n, D] unit norm."""
    return float(np.mean(after @ prompt - before @ prompt))
