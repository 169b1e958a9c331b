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

`identity()` names the model and its weights (e.g. "toyclip sha256:1f2e..."), for keys of caches
of embeddings or of anything computed with them; override it to include a hash of the weights.
The built-in models: `toyclip` (plugins/sg3probe_toyworld, trained on toy renders) and `openclip`
(sg3probe.textimage_openclip, any open_clip model from a local checkpoint file).
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
    # The default beta of a StyleCLIP global-direction edit with this model: the threshold on the
    # channel relevance |delta_i_c . delta_t|. The relevance is a cosine in the model's embedding
    # space, so its scale is the model's: StyleCLIP's 0.13 was chosen for OpenAI's CLIP; a model
    # whose image and text directions agree more closely (as a small one trained on one domain does)
    # gives larger relevances, and declares its own value. (The strength alpha is calibrated per
    # edit: sg3probe_styleclip.strength.)
    global_beta: ClassVar[float] = 0.13

    def preprocess(self, images: "torch.Tensor") -> "torch.Tensor":
        """Images [B, C, H, W] in [-1, 1] -> the model's input (resized, normalised); differentiable."""
        raise NotImplementedError(f"{type(self).__name__}.preprocess")

    def encode_image(self, images: "torch.Tensor") -> "torch.Tensor":
        """Unit-norm embeddings [B, D] of images [B, C, H, W] in [-1, 1]; differentiable."""
        raise NotImplementedError(f"{type(self).__name__}.encode_image")

    def encode_text(self, texts: Sequence[str]) -> "torch.Tensor":
        """Unit-norm embeddings [N, D] of texts."""
        raise NotImplementedError(f"{type(self).__name__}.encode_text")

    def identity(self) -> str:
        """What the embeddings depend on, as a cache key: the name, plus the weights' sha256 where
        a subclass knows it (the default is the name alone)."""
        return self.name

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


def square_resize(images: "torch.Tensor", size: int) -> "torch.Tensor":
    """Images [B, C, H, W] -> [B, C, size, size]: centre-cropped to a square, then resized
    bilinearly (antialiased when shrinking); differentiable, and a no-op at the right size."""
    from torch.nn import functional as F

    if images.ndim != 4:
        raise ValueError(f"images must be [B, C, H, W]; got {list(images.shape)}")
    height, width = images.shape[-2:]
    side = min(height, width)
    if height != width:
        top, left = (height - side) // 2, (width - side) // 2
        images = images[..., top:top + side, left:left + side]
    if side == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=side > size)


def is_text_image_model(scorer: type | Scorer) -> bool:
    """Whether a scorer (class or instance) can encode images and texts differentiably."""
    cls = scorer if isinstance(scorer, type) else type(scorer)
    return issubclass(cls, TextImageScorer)
