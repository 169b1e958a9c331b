"""Edit effects: render edits of held-out latents, score them, and summarise what moved.

`EditBench` holds one set of held-out latents under one *view* (how images are rendered for the
scorer: as they are, pseudo-aligned with ws[:, 0] = w_avg, and/or under user transforms) and
renders edits along a direction. The summaries (`target_response`, `change_rates`, ...) are
pure numpy on the scores, so they are tested without a generator.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from sg3probe.editing import Direction, apply_direction
from sg3probe.imaging import to_uint8


@dataclass(frozen=True)
class View:
    """How the held-out latents of one model are rendered for the scorer."""

    name: str  # "aligned", "pseudo-aligned", "transformed", "natural"
    pseudo_align: bool = False  # ws[:, 0] = w_avg after the edit (canonical pose of an unaligned model)
    transforms: torch.Tensor | None = None  # [n, 3, 3] inverse user transforms, one per sample


@dataclass
class EditEffect:
    """Scores of the held-out samples edited at each strength along one direction."""

    strengths: np.ndarray  # [S] in sigmas, ascending
    scores: dict[str, np.ndarray]  # attribute -> [S, n]
    original: dict[str, np.ndarray]  # attribute -> [n], the unedited samples
    pixels: dict[str, float] = field(default_factory=dict)  # region pixel-change statistics
    grid: np.ndarray | None = None  # uint8 [k, S, H, W, C]: the first k samples at every strength


class EditBench:
    """Renders and scores edits of held-out latents ws [n, num_ws, w_dim] under one view."""

    def __init__(self, G, scorer, ws: torch.Tensor, view: View, *, batch_size: int = 32, keep: int = 0) -> None:
        self.G, self.scorer, self.view = G, scorer, view
        self.ws = torch.as_tensor(ws, dtype=torch.float32, device=G.device)  # [n, num_ws, w_dim]
        self.batch_size, self.keep = batch_size, min(keep, len(self.ws))
        self.can_segment = scorer.supports("segment")
        self.renders = 0  # images rendered so far, for timings
        self.regions: tuple[str, ...] = ()  # the scorer's region names, once segmented
        self._original: tuple[dict[str, np.ndarray], np.ndarray, np.ndarray | None] | None = None

    def __len__(self) -> int:
        return len(self.ws)

    @torch.no_grad()
    def _render(self, direction: Direction | None, strength: torch.Tensor, index: np.ndarray,
                rows: list[int] | None) -> torch.Tensor:
        """Images of samples `index` edited by `strength` [len(index)] (raw units)."""
        ws = self.ws[torch.as_tensor(index, device=self.ws.device)]
        latents = None
        if direction is not None:
            latents = apply_direction(self.G, ws, direction, strength.to(ws.device), rows)
            ws = latents.ws
        if self.view.pseudo_align:
            ws = ws.clone()
            ws[:, 0] = self.G.w_avg
            if latents is not None and latents.styles is not None:
                latents.styles["input"] = self.G.styles(ws)["input"]
        transform = None if self.view.transforms is None else self.view.transforms[torch.as_tensor(index)].to(self.G.device)
        self.renders += len(index)
        if latents is not None and latents.styles is not None:
            return self.G.synthesis(styles=latents.styles, transform=transform)
        return self.G.synthesis(ws, transform=transform)

    def _score(self, images: torch.Tensor) -> dict[str, np.ndarray]:
        return {k: np.asarray(v, dtype=np.float64) for k, v in self.scorer.score(images).items()}

    def original(self) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray | None]:
        """Scores (attribute -> [n]), images uint8 [n, H, W, C] and region masks [n, H, W] (or None)."""
        if self._original is None:
            scores, images, masks = [], [], []
            for index in self._batches(np.arange(len(self))):
                batch = self._render(None, torch.zeros(len(index)), index, None)
                scores.append(self._score(batch))
                images.append(to_uint8(batch))
                if self.can_segment:
                    segmentation = self.scorer.segment(batch)
                    masks.append(np.asarray(segmentation.masks))
                    self.regions = tuple(segmentation.regions)
            self._original = (_concat(scores), np.concatenate(images), np.concatenate(masks) if masks else None)
        return self._original

    def _batches(self, index: np.ndarray):
        for start in range(0, len(index), self.batch_size):
            yield index[start:start + self.batch_size]

    def region_index(self, region: str) -> int | None:
        """The label of `region` in the scorer's segmentation, None if it has no such region."""
        if not self.can_segment:
            return None
        self.original()
        return self.regions.index(region) if region in self.regions else None

    def measure(self, direction: Direction, strengths: np.ndarray, raw_strengths: np.ndarray,
                rows: list[int] | None = None, region: int | None = None) -> EditEffect:
        """Edit every held-out sample at every strength (0 reuses the originals); score them.

        With `region`, also the mean absolute pixel change inside and outside that region (the
        union of its masks before and after the edit) at both ends of the strength range.
        """
        original_scores, original_images, original_masks = self.original()
        n = len(self)
        scores = {name: np.empty((len(strengths), n)) for name in original_scores}
        grid = np.empty((self.keep, len(strengths)) + original_images.shape[1:], np.uint8) if self.keep else None
        inside = outside = area = pixel_count = 0.0  # change sums (0-255 units) and pixel counts
        ends = {0, len(strengths) - 1}
        for s, (sigma, raw) in enumerate(zip(strengths, raw_strengths)):
            if raw == 0:
                for name in scores:
                    scores[name][s] = original_scores[name]
                if grid is not None:
                    grid[:, s] = original_images[:self.keep]
                continue
            for index in self._batches(np.arange(n)):
                images = self._render(direction, torch.full((len(index),), float(raw)), index, rows)
                for name, values in self._score(images).items():
                    scores[name][s, index] = values
                pixels = to_uint8(images)
                if grid is not None and index[0] < self.keep:
                    take = index[index < self.keep]
                    grid[take, s] = pixels[:len(take)]
                if region is not None and original_masks is not None and s in ends:
                    masks = np.asarray(self.scorer.segment(images).masks)
                    inside_mask = (masks == region) | (original_masks[index] == region)  # [b, H, W]
                    change = np.abs(pixels.astype(np.float64) - original_images[index]).mean(axis=3)  # [b, H, W]
                    inside += (change * inside_mask).sum()
                    outside += (change * ~inside_mask).sum()
                    area += inside_mask.sum()
                    pixel_count += inside_mask.size
        pixel_stats = {}
        if pixel_count:
            pixel_stats = {
                "change_inside": inside / max(area, 1),  # mean |delta| per pixel, 0-255 units
                "change_outside": outside / max(pixel_count - area, 1),
                "share_inside": inside / (inside + outside) if inside + outside else float("nan"),
                "region_area": area / pixel_count,
            }
        return EditEffect(np.asarray(strengths, float), scores, original_scores, pixel_stats, grid)

    def push_across(self, direction: Direction, raw_strength: float, sides: np.ndarray, index: np.ndarray,
                    rows: list[int] | None) -> dict[str, np.ndarray]:
        """Scores of samples `index` edited by raw_strength * sides[index] (sides = -1 or +1 each)."""
        parts = []
        for chunk in self._batches(np.asarray(index)):
            strength = torch.as_tensor(raw_strength * sides[chunk], dtype=torch.float32)
            parts.append(self._score(self._render(direction, strength, chunk, rows)))
        return _concat(parts)


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


# ----- summaries (pure numpy) ---------------------------------------------------------------

def target_response(scores: np.ndarray, kind: str, natural_std: float, change_std: float = 1.0,
                    tolerance: float = 0.1) -> dict[str, float]:
    """How the edited attribute responds, from its scores [S, n] at ascending strengths.

    success: a binary attribute's decision crosses its threshold (0) from the negative to the
    positive end; a continuous one rises by at least `change_std` natural stds. monotone: no step
    between neighbouring strengths goes down by more than `tolerance` natural stds.
    """
    low, high = scores[0], scores[-1]
    if kind == "binary":
        success = (low < 0) & (high > 0)
    else:
        success = (high - low) >= change_std * natural_std
    steps = np.diff(scores, axis=0)
    monotone = np.all(steps >= -tolerance * natural_std, axis=0) if len(scores) > 1 else np.ones(scores.shape[1], bool)
    return {"success_rate": float(success.mean()), "monotone_rate": float(monotone.mean()),
            "mean_change_std": float(np.mean(high - low) / natural_std)}


def change_rate(scores: np.ndarray, original: np.ndarray, kind: str, natural_std: float,
                change_std: float = 1.0) -> float:
    """Share of samples whose attribute changes at any strength: a binary decision flips, or a
    continuous value moves by at least `change_std` natural stds from the unedited sample."""
    if kind == "binary":
        changed = np.any((scores > 0) != (original > 0)[None, :], axis=0)
    else:
        changed = np.max(np.abs(scores - original[None, :]), axis=0) >= change_std * natural_std
    return float(changed.mean())


def mean_shift(scores: np.ndarray, natural_std: float) -> float:
    """The systematic move of an attribute over the strength range: |mean(end - start)| in stds."""
    return float(abs(np.mean(scores[-1] - scores[0])) / natural_std)
