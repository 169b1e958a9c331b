"""Seeds -> z -> W, W+, S, transforms and scores, computed shard by shard into a SampleStore.

Images are rendered only when a scorer needs them, one batch at a time, and then dropped.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np
import torch

from sg3probe.analyzer import SPACES
from sg3probe.models.transforms import batch_inverse_transforms
from sg3probe.sampling.latents import z_from_seeds
from sg3probe.scorer import Scorer
from sg3probe.store import ArraySpec, SampleStore, fill, shard_share
from sg3probe.store.seeds import parse_seed_ranges

SCORE_PREFIX = "score__"
# With pseudo-alignment, the scores of the images as generated (ws[0] kept) are stored too.
RAW_SCORE_PREFIX = "rawscore__"
TRANSFORMS = ("identity", "random")
S_DTYPES = ("float16", "float32")


@dataclass(frozen=True)
class SamplingSpec:
    """How to sample one model: seeds, truncation, geometry, and what to keep."""

    seeds: str = "0-1999"
    truncation_psi: float = 1.0
    truncation_cutoff: int | None = None
    spaces: tuple[str, ...] = ("z", "w", "wplus", "s")
    transforms: str = "identity"  # "identity", or "random" (unaligned by user transform)
    max_angle: float = 30.0  # degrees, for transforms = "random"
    max_translate: float = 0.12  # fraction of the image, for transforms = "random"
    pseudo_align: bool = False  # render for the scorer with ws[:, 0] = w_avg (and also as generated)
    s_dtype: str = "float16"
    batch_size: int = 32
    shard_size: int = 500

    def __post_init__(self) -> None:
        """Refuse settings that would fail only once sampling starts (a ValueError naming the setting;
        bad seeds are the seed parser's ConfigError)."""
        parse_seed_ranges(self.seeds)
        if self.transforms not in TRANSFORMS:
            raise ValueError(f"transforms must be {' or '.join(map(repr, TRANSFORMS))}, got {self.transforms!r}")
        if self.s_dtype not in S_DTYPES:
            raise ValueError(f"s_dtype must be {' or '.join(map(repr, S_DTYPES))}, got {self.s_dtype!r}")
        unknown = sorted(set(self.spaces) - set(SPACES))
        if unknown:
            raise ValueError(f"spaces {', '.join(unknown)} unknown; the spaces are {', '.join(SPACES)}")
        if not math.isfinite(self.truncation_psi):
            raise ValueError(f"truncation_psi must be a finite number, got {self.truncation_psi}")
        if self.truncation_cutoff is not None and self.truncation_cutoff < 0:
            raise ValueError(f"truncation_cutoff must be >= 0, got {self.truncation_cutoff}")
        for name in ("max_angle", "max_translate"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        for name in ("batch_size", "shard_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def style_layout(G) -> "OrderedDict[str, int]":
    """The S entries of G in order with their sizes; flattened S is their concatenation."""
    layout = OrderedDict(input=4)
    for spec in G.architecture.layers:
        layout[spec.name] = spec.style_dim
    return layout


def _random_geometry(seeds: Iterable[int], spec: SamplingSpec) -> tuple[np.ndarray, np.ndarray]:
    """Per-seed rotation (degrees) and translation, independent of batching."""
    angles, shifts = [], []
    for seed in seeds:
        rng = np.random.RandomState([int(seed) % (2 ** 32), 7])  # stream 7: geometry, never z
        angles.append(rng.uniform(-spec.max_angle, spec.max_angle))
        shifts.append(rng.uniform(-spec.max_translate, spec.max_translate, size=2))
    return np.array(angles), np.array(shifts)


class Sampler:
    """Computes the arrays of one shard of seeds for a generator (and optionally a scorer)."""

    def __init__(self, G, spec: SamplingSpec, scorer: Scorer | None = None):
        self.G, self.spec, self.scorer = G, spec, scorer
        self.layout = style_layout(G)

    def array_specs(self) -> dict[str, ArraySpec]:
        G, spec = self.G, self.spec
        arrays: dict[str, ArraySpec] = {"transform": ArraySpec((3, 3), "float32")}
        shapes = {"z": (G.z_dim,), "w": (G.w_dim,), "wplus": (G.num_ws, G.w_dim), "s": (sum(self.layout.values()),)}
        for space in spec.spaces:
            arrays[space] = ArraySpec(shapes[space], spec.s_dtype if space == "s" else "float32")
        if self.scorer is not None:
            prefixes = (SCORE_PREFIX, RAW_SCORE_PREFIX) if spec.pseudo_align else (SCORE_PREFIX,)
            for prefix in prefixes:
                for attribute in self.scorer.attributes:
                    arrays[prefix + attribute.name] = ArraySpec((), "float32")
        return arrays

    def metadata(self) -> dict[str, Any]:
        return {"sampling": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.spec.__dict__.items()},
                "style_layout": dict(self.layout),
                "scorer": None if self.scorer is None else self.scorer.name}

    def transforms_for(self, seeds: list[int]) -> torch.Tensor:
        if self.spec.transforms == "identity":
            return torch.eye(3).expand(len(seeds), 3, 3).clone()
        return batch_inverse_transforms(*_random_geometry(seeds, self.spec))  # "random"

    @torch.no_grad()
    def compute(self, seeds: list[int]) -> dict[str, np.ndarray]:
        """All arrays for these seeds; each row depends on its seed only."""
        spec = self.spec
        parts: dict[str, list[np.ndarray]] = {}
        for start in range(0, len(seeds), spec.batch_size):
            chunk = seeds[start:start + spec.batch_size]
            for name, value in self._batch(chunk).items():
                parts.setdefault(name, []).append(value)
        return {name: np.concatenate(values) for name, values in parts.items()}

    def _batch(self, seeds: list[int]) -> dict[str, np.ndarray]:
        G, spec = self.G, self.spec
        z = z_from_seeds(seeds, G.z_dim, G.device)
        ws = G.mapping(z, None, truncation_psi=spec.truncation_psi, truncation_cutoff=spec.truncation_cutoff)
        transform = self.transforms_for(seeds)
        out = {"transform": transform.numpy()}
        if "z" in spec.spaces:
            out["z"] = z.cpu().numpy()
        if "w" in spec.spaces:
            out["w"] = ws[:, -1].cpu().numpy()  # the untruncated rows when a cutoff is set
        if "wplus" in spec.spaces:
            out["wplus"] = ws.cpu().numpy()
        styles = G.styles(ws) if ("s" in spec.spaces or self.scorer is not None) else None
        if "s" in spec.spaces:
            out["s"] = torch.cat(list(styles.values()), dim=1).cpu().numpy()
        if self.scorer is not None:
            views = [(SCORE_PREFIX, ws)]
            if spec.pseudo_align:
                aligned_ws = ws.clone()
                aligned_ws[:, 0] = G.w_avg
                views = [(SCORE_PREFIX, aligned_ws), (RAW_SCORE_PREFIX, ws)]
            for prefix, scored_ws in views:
                images = G.synthesis(scored_ws, transform=transform.to(G.device))
                for name, values in self.scorer.score(images).items():
                    out[prefix + name] = np.asarray(values, dtype=np.float32)
        return out


def open_sample_store(path, G, spec: SamplingSpec, scorer: Scorer | None = None, *,
                      model_sha256: str = "", scorer_options: Mapping[str, Any] | None = None
                      ) -> tuple[SampleStore, Sampler]:
    """Create the store at `path`, or open it to resume (a StoreError if it holds other settings),
    and the sampler that fills it. The scorer's options (its weights file, say) are settings too."""
    sampler = Sampler(G, spec, scorer)
    metadata = {"model_sha256": model_sha256, **sampler.metadata()}
    if scorer is not None and scorer_options:  # only when given: stores of option-less scorers stay as they were
        metadata["scorer_options"] = dict(scorer_options)
    store = SampleStore.create(path, arrays=sampler.array_specs(), seeds=spec.seeds,
                               shard_size=spec.shard_size, metadata=metadata)
    return store, sampler


def sample_to_store(path, G, spec: SamplingSpec, scorer: Scorer | None = None, *,
                    model_sha256: str = "", scorer_options: Mapping[str, Any] | None = None,
                    progress: bool = True, share: tuple[int, int] = (0, 1)) -> SampleStore:
    """Create or resume the store at `path` and fill it; finished shards are never recomputed.

    share: (rank, world size): this process fills only its share of the shards (shard_share), so that
    `world size` processes, started on any machines that see `path`, fill the store together.
    """
    store, sampler = open_sample_store(path, G, spec, scorer, model_sha256=model_sha256,
                                       scorer_options=scorer_options)
    fill(store, sampler.compute, progress=progress, shard_ids=shard_share(store.num_shards, *share))
    return store


class StoreSampleSet:
    """The SampleSet an analyzer sees, over a complete store: S split by layer, scores by name."""

    def __init__(self, store: SampleStore):
        self.store = store
        self.layout = OrderedDict(store.metadata.get("style_layout", {}))
        self._cache: dict[str, Any] = {}

    def keys(self):
        names = {"seeds", "transforms"}
        for name in self.store.arrays:
            if name.startswith(SCORE_PREFIX):
                names.add("scores")
            elif name.startswith(RAW_SCORE_PREFIX):
                names.add("scores_as_generated")
            elif name != "transform":
                names.add(name)
        return sorted(names)

    def __contains__(self, name: object) -> bool:
        return name in self.keys()

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, name: str) -> Any:
        if name not in self._cache:
            self._cache[name] = self._load(name)
        return self._cache[name]

    def _load(self, name: str) -> Any:
        if name == "seeds":
            return self.store.seeds
        if name == "transforms":
            return self.store.read("transform")
        if name in ("scores", "scores_as_generated"):
            prefix = SCORE_PREFIX if name == "scores" else RAW_SCORE_PREFIX
            return {n[len(prefix):]: self.store.read(n) for n in self.store.arrays if n.startswith(prefix)}
        if name == "s":
            flat = self.store.read("s").astype(np.float32)
            styles, offset = OrderedDict(), 0
            for layer, size in self.layout.items():
                styles[layer] = flat[:, offset:offset + size]
                offset += size
            return styles
        if name not in self.store.arrays:
            raise KeyError(f"no {name!r} in these samples; they hold {', '.join(self.keys())}")
        return self.store.read(name)
