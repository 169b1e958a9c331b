"""The toy world plugin: the `toyfaces` scorer, the `toyclip` text-image model and the
`toyfaces-aligned` / `toyfaces-unaligned` generators of the model zoo, all trained on the
procedural faces of `sg3probe.toyworld`.

The weights live in `weights/` inside this package (shipped in the wheel as package data):
`scorers.pt` (written by `sg3probe toy train-scorers`), `toyclip.pt` (written by
`sg3probe toy train-textimage`) and one generator file per model (written by `sg3probe toy train`).
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import sg3probe
from sg3probe.hookspecs import ModelEntry
from sg3probe.scorer import Attribute, Scorer, Segmentation
from sg3probe.textimage import TextImageScorer, square_resize

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SCORER_WEIGHTS = WEIGHTS_DIR / "scorers.pt"
TOYCLIP_WEIGHTS = WEIGHTS_DIR / "toyclip.pt"

# name -> (file in WEIGHTS_DIR, description)
MODELS = {
    "toyfaces-aligned": ("toyfaces-aligned.pt",
                         "StyleGAN3-T trained on upright, centred toy faces (like FFHQ)"),
    "toyfaces-unaligned": ("toyfaces-unaligned.pt",
                           "StyleGAN3-T trained on toy faces rotated up to 30 deg and shifted up to "
                           "12 % (like FFHQ-U)"),
}


def _attributes() -> tuple[Attribute, ...]:
    from sg3probe.toyworld.attributes import ATTRIBUTES

    return tuple(Attribute(info.name, info.kind,
                           None if info.kind == "binary" else (info.low, info.high), info.changes)
                 for info in ATTRIBUTES)


class ToyFacesScorer(Scorer):
    """Attributes (binary logits, continuous values in [0, 1]), part masks and pose of toy faces."""

    name = "toyfaces"
    description = ("the toy world's scorer: 3 binary and 5 continuous attributes, 8 part regions "
                   "and the in-plane pose of 64x64 toy faces")
    attributes = _attributes()

    def __init__(self, device: Any = "cpu", weights: str | Path | None = None) -> None:
        super().__init__(device)
        from sg3probe.toyworld.scorers import ToyFacesPredictor

        self.weights = Path(weights) if weights is not None else SCORER_WEIGHTS
        self.predictor = ToyFacesPredictor.from_file(self.weights, device)
        self._last: tuple = (None, -1, None)  # (images, their version, predictions)

    def _predict(self, images):
        """One network pass per batch: score, segment and pose of the same unchanged tensor share it."""
        last_images, version, predictions = self._last
        if images is not last_images or getattr(images, "_version", None) != version:
            predictions = self.predictor.predict(images)
            # Keeping a reference to the tensor keeps its id from being reused by another one.
            self._last = (images, getattr(images, "_version", None), predictions)
        return predictions

    def score(self, images) -> dict:
        """Binary logits (decided at 0) and continuous values, each [B]."""
        from sg3probe.toyworld.scorers import BINARY, CONTINUOUS

        predictions = self._predict(images)
        scores = {name: predictions.binary_logits[:, i].numpy() for i, name in enumerate(BINARY)}
        scores.update({name: predictions.continuous[:, i].numpy() for i, name in enumerate(CONTINUOUS)})
        return scores

    def segment(self, images) -> Segmentation:
        """Region ids [B, H, W] over `sg3probe.toyworld.render.REGIONS`."""
        from sg3probe.toyworld.render import REGIONS

        return Segmentation(self._predict(images).masks.numpy(), REGIONS)

    def pose(self, images) -> dict:
        """angle_deg (counter-clockwise), tx and ty (fractions of the width; right, down), each [B]."""
        pose = self._predict(images).pose.numpy()
        return {"angle_deg": pose[:, 0], "tx": pose[:, 1], "ty": pose[:, 2]}


class ToyClipScorer(TextImageScorer):
    """The toy text-image model: toy faces and captions of their attributes in one 64-d space."""

    name = "toyclip"
    description = ("the toy world's text-image model: a small CLIP trained on toy renders and "
                   "captions of their attributes (\"a smiling face with blond hair and glasses\")")
    embedding_dim = 64
    image_size = 64
    # Its caption directions agree with the image directions of their attributes (cosine 0.65-0.81,
    # docs/styleclip.md), so channel relevances run up to 0.8 and beta 0.13 keeps 59-429 of the 535
    # channels of a toy generator; 0.45 was chosen by a beta x alpha sweep on samples outside the
    # analyzer's held-out ones.
    global_beta = 0.45

    def __init__(self, device: Any = "cpu", weights: str | Path | None = None) -> None:
        super().__init__(device)
        from sg3probe.toyworld.textimage import load_toyclip

        self.weights = Path(weights) if weights is not None else TOYCLIP_WEIGHTS
        self.net = load_toyclip(self.weights, device)
        self.embedding_dim = self.net.embedding_dim

    def preprocess(self, images):
        """Images [B, 3, H, W] in [-1, 1] -> [B, 3, 64, 64] on the model's device; differentiable."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"toyclip reads RGB images [B, 3, H, W]; got {list(images.shape)}")
        return square_resize(images, self.image_size).to(self.net.word_embedding.weight.device,
                                                          dtype=self.net.word_embedding.weight.dtype)

    def encode_image(self, images):
        """Unit-norm embeddings [B, 64] of images [B, 3, H, W] in [-1, 1]; differentiable."""
        return self.net.encode_image(self.preprocess(images))

    def encode_text(self, texts):
        """Unit-norm embeddings [N, 64] of texts (words outside the captions' vocabulary are unknown)."""
        return self.net.encode_text(list(texts))

    def identity(self) -> str:
        stat = self.weights.stat()
        return f"{self.name} sha256:{_sha256(str(self.weights), stat.st_size, stat.st_mtime_ns)}"


@functools.lru_cache(maxsize=None)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    # Keyed by size and mtime so that a retrained file is hashed again.
    from sg3probe.checkpoints import file_sha256

    return file_sha256(path)


def model_entry(name: str) -> ModelEntry:
    """The zoo entry of a toy model; a missing weights file gives sha256 '' (loading says why)."""
    filename, description = MODELS[name]
    path = WEIGHTS_DIR / filename
    if path.is_file():
        stat = path.stat()
        sha256 = _sha256(str(path), stat.st_size, stat.st_mtime_ns)
    else:
        sha256 = ""
        description = f"{description} [weights missing: train with `sg3probe toy train`]"
    return ModelEntry(name=name, kind="stylegan3-t", resolution=64, path=path, sha256=sha256,
                      description=description)


@sg3probe.hookimpl
def register_scorers(register):
    register(ToyFacesScorer)
    register(ToyClipScorer)


@sg3probe.hookimpl
def register_models(register):
    for name in MODELS:
        register(model_entry(name))
