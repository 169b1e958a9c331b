"""Text-image models (CLIP-like): the scorer kind that text-driven editing (StyleCLIP) needs.

A text-image model is a `Scorer` that also maps images and texts into one embedding space, with
differentiable torch methods so that a latent mapper can be trained through it:

    class MyClip(TextImageScorer):
        name = "myclip"

        def encode_image(self, images):   # [B, C, H, W] in [-1, 1], any size; differentiable
            x = self.preprocess(images)   # resize / normalise as the model expects
            return F.normalize(self.net.encode_image(x), dim=-1)       # [B, D]

        def encode_text(self, texts):     # list of strings
            return F.normalize(self.net.encode_text(tokenize(texts)), dim=-1)  # [N, D]

`embed_image` / `embed_text` (the numpy capabilities of every scorer) come for free. A text-image
model has no attributes of its own unless it declares some; `score` returns an empty dict then.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Sequence

import numpy as np

from sg3probe.scorer import Scorer

if TYPE_CHECKING:
    import torch


class TextImageScorer(Scorer):
    """A scorer that embeds images and texts in a shared, L2-normalised space (CLIP-like)."""

    embedding_dim: ClassVar[int] = 0
    # The image size the model reads (images are resized to it by `preprocess`).
    image_size: ClassVar[int] = 224

    def preprocess(self, images: "torch.Tensor") -> "torch.Tensor":
        """Images [B, C, H, W] in [-1, 1] -> the model's input (resized, normalised); differentiable."""
        raise NotImplementedError(f"{type(self).__name__}.preprocess")

    def encode_image(self, images: "torch.Tensor") -> "torch.Tensor":
        """Unit-norm embeddings [B, D] of images [B, C, H, W] in [-1, 1]; differentiable."""
        raise NotImplementedError(f"{type(self).__name__}.encode_image")

    def encode_text(self, texts: Sequence[str]) -> "torch.Tensor":
        """Unit-norm embeddings [N, D] of texts."""
        raise NotImplementedError(f"{type(self).__name__}.encode_text")

    def score(self, images: "torch.Tensor") -> dict[str, np.ndarray]:
        return {}

    def embed_image(self, images: "torch.Tensor") -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.encode_image(images).float().cpu().numpy()

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.encode_text(list(texts)).float().cpu().numpy()


def is_text_image_model(scorer: type | Scorer) -> bool:
    """Whether a scorer (class or instance) can encode images and texts differentiably."""
    cls = scorer if isinstance(scorer, type) else type(scorer)
    return issubclass(cls, TextImageScorer)
