"""StyleSpace channel localization and attribute-specific channels (Wu et al. 2021), in numpy.

Locally-active channels (spec section 2a), given gradient maps [N, C, P, P] and region masks:
    downsample_masks -> overlap_scores (n / o^2 per image, channel, region) -> top_regions
    -> region_frequency (frac[c, r]) -> localize (the 0.5 / 0.25 rule) -> ranked_channels.
Attribute-specific channels (2b): select_positives -> attribute_relevance.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np



def downsample_masks(masks: np.ndarray, size: int, num_regions: int) -> np.ndarray:
    """Region masks [N, H, W] -> [N, size, size] by majority vote per block (ties: lower label)."""
    masks = np.asarray(masks)
    count, height, width = masks.shape
    if height % size or width % size:
        raise ValueError(f"mask size {height}x{width} is not a multiple of {size}")
    if masks.min(initial=0) < 0 or masks.max(initial=0) >= num_regions:
        raise ValueError(f"mask labels must be in [0, {num_regions}), got {masks.min()}..{masks.max()}")
    blocks = masks.reshape(count, size, height // size, size, width // size)
    votes = np.stack([(blocks == r).sum(axis=(2, 4)) for r in range(num_regions)], axis=-1)
    return votes.argmax(axis=-1)  # [N, size, size]


def overlap_scores(maps: np.ndarray, masks: np.ndarray, num_regions: int) -> np.ndarray:
    """Per-image overlap score n / o^2 [N, C, R] of gradient maps [N, C, P, P] with masks [N, P, P].

    For region r with o pixels (p = o / P^2), each channel's map is binarised at its (1 - p) * 100
    percentile, so that about o pixels are on; n counts those inside the region. NaN where o = 0.
    """
    maps = np.asarray(maps, dtype=np.float32)
    count, channels = maps.shape[:2]
    if masks.shape != (count,) + maps.shape[2:]:
        raise ValueError(f"masks {masks.shape} do not match gradient maps {maps.shape}")
    flat = maps.reshape(count, channels, -1)  # [N, C, P*P]
    pixels = flat.shape[-1]
    scores = np.full((count, channels, num_regions), np.nan)
    for image in range(count):
        labels = masks[image].reshape(-1)
        areas = np.bincount(labels, minlength=num_regions)
        present = np.flatnonzero(areas)
        percentiles = (1.0 - areas[present] / pixels) * 100.0
        thresholds = np.percentile(flat[image], percentiles, axis=1)  # [len(present), C]
        for index, region in enumerate(present):
            active = flat[image] > thresholds[index][:, None]  # [C, P*P]
            inside = active[:, labels == region].sum(axis=1)
            scores[image, :, region] = inside / float(areas[region]) ** 2
    return scores


def top_regions(scores: np.ndarray) -> np.ndarray:
    """The top region [N, C] of each image and channel (nanargmax over regions; -1 if all NaN)."""
    filled = np.where(np.isnan(scores), -np.inf, scores)
    top = filled.argmax(axis=-1)
    return np.where(np.isfinite(filled.max(axis=-1)), top, -1)


def region_frequency(top: np.ndarray, present: np.ndarray) -> np.ndarray:
    """frac[c, r] = #images where r is c's top region / #images containing r (NaN if none does).

    top [N, C] from top_regions; present [N, R] bool, which regions each image contains.
    """
    present = np.asarray(present, dtype=bool)
    num_regions = present.shape[1]
    hits = np.stack([(top == r).sum(axis=0) for r in range(num_regions)], axis=1)  # [C, R]
    images = present.sum(axis=0).astype(np.float64)  # [R]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(images > 0, hits / images, np.nan)


@dataclass(frozen=True)
class Localization:
    """The region set a channel is localized to (empty if none) and the rule's two numbers."""

    regions: tuple[int, ...]
    share: float  # sum of frac over the set
    margin: float  # share minus the largest frac outside the set


def localize(frac: np.ndarray, threshold: float = 0.5, margin: float = 0.25,
             max_regions: int = 2) -> list[Localization]:
    """Apply the rule per channel: T (the k regions of highest frac, smallest k <= max_regions)
    is kept if sum_T frac > threshold and sum_T frac - max_{r not in T} frac > margin."""
    values = np.nan_to_num(np.asarray(frac, dtype=np.float64), nan=0.0)
    found = []
    for row in values:
        order = np.argsort(-row, kind="stable")
        result = Localization((), 0.0, 0.0)
        for size in range(1, max_regions + 1):
            share = float(row[order[:size]].sum())
            outside = float(row[order[size]]) if size < len(row) else 0.0
            if share > threshold and share - outside > margin:
                result = Localization(tuple(int(r) for r in sorted(order[:size])), share, share - outside)
                break
        found.append(result)
    return found


def ranked_channels(localizations: list[Localization], frac: np.ndarray, region: int,
                    strength: np.ndarray | None = None) -> np.ndarray:
    """Channels localized to a set containing `region`, best first: single-region sets before
    pairs, then by the sum of frac over the set, then by frac of the region itself, then (ties are
    common with few images) by `strength` [C, R], e.g. the mean overlap score, higher first."""
    frac = np.nan_to_num(frac, nan=0.0)
    strength = np.zeros_like(frac) if strength is None else np.nan_to_num(strength, nan=0.0)
    chosen = [c for c, found in enumerate(localizations) if region in found.regions]
    chosen.sort(key=lambda c: (len(localizations[c].regions), -localizations[c].share, -frac[c, region],
                               -strength[c, region]))
    return np.asarray(chosen, dtype=np.int64)


def select_positives(scores: np.ndarray, count: int = 10, candidates: int = 1000, sign: float = 1.0,
                     rng: np.random.Generator | None = None) -> np.ndarray:
    """Indices of `count` positives drawn from the `candidates` samples most extreme in direction
    `sign` (+1: highest scores); all of them when count >= candidates. NaN scores are never chosen."""
    scores = np.asarray(scores, dtype=np.float64) * np.sign(sign)
    valid = np.flatnonzero(~np.isnan(scores))
    if count < 2 or len(valid) < count:
        raise ValueError(f"need at least 2 positives and that many valid scores; count={count}, "
                         f"valid={len(valid)}")
    extreme = valid[np.argsort(-scores[valid], kind="stable")[:max(candidates, count)]]
    if len(extreme) == count or rng is None:
        return np.sort(extreme[:count])
    return np.sort(rng.choice(extreme, count, replace=False))


def attribute_relevance(styles: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """theta_c = |mean(s_hat_c)| / std(s_hat_c) of positives' styles [K, C], s_hat = (s - mu) / sigma."""
    normalised = (np.asarray(styles, dtype=np.float64) - mean) / np.where(std > 0, std, 1.0)
    spread = normalised.std(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.abs(normalised.mean(axis=0)) / spread
    return np.where(spread > 0, theta, np.where(np.abs(normalised.mean(axis=0)) > 0, np.inf, 0.0))
