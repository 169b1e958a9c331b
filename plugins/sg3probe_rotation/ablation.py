"""W+ ablations and what they change: geometry (model, image, pose scorer) versus content.

An ablation replaces rows of ws [N, num_ws, w_dim] by other codes (another sample's rows, w_avg,
or one fixed code) and renders again; `measure_change` compares the new images with the old ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from sg3probe_rotation.geometry import (aligned_distance, internal_geometry, masked_rms, register,
                                        scorer_pose, wrap_degrees)

MODES = ("resample", "w_avg", "fixed")


@dataclass(frozen=True)
class Target:
    """Rows of W+ to replace: first..last inclusive."""

    first: int
    last: int

    @property
    def label(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"

    @property
    def rows(self) -> slice:
        return slice(self.first, self.last + 1)


def parse_range(text: str, num_ws: int) -> Target:
    """'a-b' (inclusive) or 'k' -> Target; a ValueError that says what is accepted."""
    parts = str(text).split("-")
    try:
        first, last = (int(parts[0]), int(parts[-1])) if len(parts) in (1, 2) else (None, None)
    except ValueError:
        first = last = None
    if first is None or not 0 <= first <= last < num_ws:
        raise ValueError(f"W+ range {text!r} is not 'a-b' with 0 <= a <= b < {num_ws} (inclusive, e.g. '0-1')")
    return Target(first, last)


def ablate(ws: torch.Tensor, target: Target, mode: str, *, donors: np.ndarray, w_avg: torch.Tensor,
           fixed: torch.Tensor) -> torch.Tensor:
    """ws [N, num_ws, w_dim] with rows `target` replaced according to `mode`.

    resample: sample i takes those rows from sample donors[i]; w_avg: the mapping's average;
    fixed: the rows of one fixed code `fixed` [num_ws, w_dim].
    """
    out = ws.clone()
    if mode == "resample":
        out[:, target.rows] = ws[torch.as_tensor(donors), target.rows]
    elif mode == "w_avg":
        out[:, target.rows] = w_avg.to(ws)
    elif mode == "fixed":
        out[:, target.rows] = fixed[target.rows].to(ws)
    else:
        raise ValueError(f"ablation mode must be one of {', '.join(MODES)}, got {mode!r}")
    return out


def derangement(count: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation without fixed points: donor of each sample (count >= 2)."""
    order = rng.permutation(count)
    donors = np.empty(count, dtype=np.int64)
    donors[order] = np.roll(order, -1)  # a cycle through a random order never maps i to i
    return donors


@torch.no_grad()
def render(G, ws: torch.Tensor, transforms: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Images [N, C, H, W] (CPU float32) of ws with per-sample inverse transforms [N, 3, 3]."""
    parts = []
    for start in range(0, len(ws), batch_size):
        chunk = slice(start, start + batch_size)
        parts.append(G.synthesis(ws[chunk].to(G.device), transform=transforms[chunk].to(G.device)).float().cpu())
    return torch.cat(parts)


@dataclass
class Observation:
    """What is measured on one batch of images: geometry three ways, and scores."""

    images: torch.Tensor  # [N, C, H, W]
    internal: dict[str, np.ndarray]  # angle_deg, tx, ty
    pose: dict[str, np.ndarray] | None  # from the scorer, where it estimates pose
    scores: dict[str, np.ndarray] | None  # attribute scores

    def part(self, rows: slice) -> "Observation":
        """The observation of some of the samples."""
        def cut(values):
            return None if values is None else {name: array[rows] for name, array in values.items()}
        return Observation(self.images[rows], cut(self.internal), cut(self.pose), cut(self.scores))


def observe(G, scorer, ws: torch.Tensor, transforms: torch.Tensor, batch_size: int) -> Observation:
    """Render ws and measure its model-internal geometry, pose-scorer pose and attribute scores."""
    images = render(G, ws, transforms, batch_size)
    pose = scores = None
    if scorer is not None:
        poses, score_parts = [], []
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size].to(G.device)
            if scorer.supports("pose"):
                poses.append(scorer_pose(scorer, chunk))
            if scorer.attributes:
                score_parts.append({k: np.asarray(v, np.float64) for k, v in scorer.score(chunk).items()})
        pose = _concat(poses)
        scores = _concat(score_parts)
    return Observation(images, internal_geometry(G, ws), pose, scores)


def observe_many(G, scorer, ws_list: Sequence[torch.Tensor], transforms_list: Sequence[torch.Tensor],
                 batch_size: int) -> list[Observation]:
    """`observe` for several batches at once: rendered together in full batches, then split.

    Few-sample runs render in one call instead of many; the caller bounds the total size.
    """
    sizes = [len(ws) for ws in ws_list]
    joined = observe(G, scorer, torch.cat(list(ws_list)), torch.cat(list(transforms_list)), batch_size)
    bounds = np.cumsum([0] + sizes)
    return [joined.part(slice(start, stop)) for start, stop in zip(bounds[:-1], bounds[1:])]


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray] | None:
    if not parts:
        return None
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def measure_change(before: Observation, after: Observation, width: int, score_scale: dict[str, float] | None,
                   refine: int = 2) -> dict[str, np.ndarray]:
    """Per-sample changes from `before` to `after`: geometry (a, b, c) and content.

    Angles in degrees (absolute, wrapped), translations in % of the width, pixel distances as RMS
    on the [-1, 1] scale; `score_change` is the mean absolute attribute change in units of each
    attribute's spread (score_scale).
    """
    a, b = before.images.numpy(), after.images.numpy()
    registration = register(a, b, refine=refine)
    change = {
        "internal_angle": np.abs(wrap_degrees(after.internal["angle_deg"] - before.internal["angle_deg"])),
        "internal_shift": 100 * np.hypot(after.internal["tx"] - before.internal["tx"],
                                         after.internal["ty"] - before.internal["ty"]),
        "image_angle": np.abs(registration.angle_deg),
        "image_shift": 100 * np.hypot(*registration.shift_px.T) / width,
        "confidence": registration.confidence,
        "pixel_raw": masked_rms(a, b),
        "pixel_aligned": aligned_distance(a, b, registration),
    }
    if before.pose is not None and after.pose is not None:
        change["pose_angle"] = np.abs(wrap_degrees(after.pose["angle_deg"] - before.pose["angle_deg"]))
        change["pose_shift"] = 100 * np.hypot(after.pose["tx"] - before.pose["tx"], after.pose["ty"] - before.pose["ty"])
    if before.scores is not None and after.scores is not None and score_scale:
        change["score_change"] = np.mean([np.abs(after.scores[n] - before.scores[n]) / score_scale[n]
                                          for n in score_scale], axis=0)
    return change


def score_scales(observation: Observation, floor: float = 1e-3) -> dict[str, float] | None:
    """The spread (std over samples) of each attribute score: the unit of score changes."""
    if not observation.scores:
        return None
    return {name: max(float(np.std(values)), floor) for name, values in observation.scores.items()}


def summarise(change: dict[str, np.ndarray]) -> dict[str, float]:
    """Means over samples of each per-sample change (median for the image angle, which can be
    wildly off for the few pairs whose content changed too much to register)."""
    out = {}
    for name, values in change.items():
        out[name] = float(np.median(values) if name == "image_angle" else np.mean(values))
    out["image_angle_mean"] = float(np.mean(change["image_angle"]))
    return out


def shares(rows: Sequence[dict], column: str) -> list[float]:
    """Each row's part of the column's total (0 where the total is 0)."""
    values = np.array([max(row.get(column, np.nan), 0.0) for row in rows], dtype=np.float64)
    if not np.all(np.isfinite(values)) or values.sum() <= 0:
        return [float("nan")] * len(rows)
    return list(values / values.sum())


def pose_within(angle_deg: np.ndarray, tx: np.ndarray, ty: np.ndarray, angle_tolerance: float,
                shift_tolerance: float, reference: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """Whether each pose is within the tolerances (degrees, fraction of width) of a reference pose."""
    angle_ok = np.abs(wrap_degrees(np.asarray(angle_deg) - reference[0])) <= angle_tolerance
    shift_ok = np.hypot(np.asarray(tx) - reference[1], np.asarray(ty) - reference[2]) <= shift_tolerance
    return angle_ok & shift_ok

