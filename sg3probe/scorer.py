"""What a scorer plugin writes against: images in, named attribute scores out.

    class Smile(Scorer):
        name = "smile"
        attributes = (Attribute("smiling", "binary"),)

        def __init__(self, device="cpu"):
            super().__init__(device)
            self.net = load_my_classifier().to(device)

        def score(self, images):                    # [B, C, H, W] float in [-1, 1]
            with torch.no_grad():
                return {"smiling": self.net(images).squeeze(1).cpu().numpy()}   # logits [B]

Optional capabilities are methods a subclass overrides: segment, pose, embed_image, embed_text;
``scorer.supports("segment")`` says whether it did.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Mapping, NamedTuple, Sequence

import numpy as np

from sg3probe.errors import PluginError

if TYPE_CHECKING:  # torch is only needed by callers, who have it loaded already
    import torch

ATTRIBUTE_KINDS = ("binary", "continuous")
CAPABILITIES = ("segment", "pose", "embed_image", "embed_text")


@dataclass(frozen=True)
class Attribute:
    """One named score: a binary logit (decided at 0) or a continuous value in a natural range."""

    name: str
    kind: Literal["binary", "continuous"]
    value_range: tuple[float, float] | None = None  # continuous only, e.g. (-180, 180) degrees
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ATTRIBUTE_KINDS:
            raise ValueError(f"attribute {self.name!r}: kind must be one of "
                             f"{', '.join(ATTRIBUTE_KINDS)}, got {self.kind!r}")


class Segmentation(NamedTuple):
    """Region masks and the name of each region label."""

    masks: np.ndarray  # [B, H, W] int: a region index per pixel
    regions: tuple[str, ...]  # regions[i] names the label i


class Scorer:
    """Base class of scorers: set the class attributes, implement `score`, add capabilities."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    attributes: ClassVar[tuple[Attribute, ...]] = ()

    def __init__(self, device: Any = "cpu") -> None:
        self.device = device

    def score(self, images: "torch.Tensor") -> dict[str, np.ndarray]:
        """Scores of images [B, C, H, W] in [-1, 1]: attribute name -> array [B]."""
        raise NotImplementedError(f"{type(self).__name__}.score")

    def segment(self, images: "torch.Tensor") -> Segmentation:
        """Region masks [B, H, W] of images [B, C, H, W] and the region names."""
        raise NotImplementedError(f"scorer {self.name!r} cannot segment")

    def pose(self, images: "torch.Tensor") -> dict[str, np.ndarray]:
        """The in-plane pose of images: angle_deg, tx, ty, each [B]."""
        raise NotImplementedError(f"scorer {self.name!r} cannot estimate pose")

    def embed_image(self, images: "torch.Tensor") -> np.ndarray:
        """Embeddings [B, D] of images, in the space shared with embed_text."""
        raise NotImplementedError(f"scorer {self.name!r} cannot embed images")

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings [N, D] of texts, in the space shared with embed_image."""
        raise NotImplementedError(f"scorer {self.name!r} cannot embed text")

    @classmethod
    def supports(cls, capability: str) -> bool:
        """Whether this scorer implements an optional capability (it overrides the method)."""
        if capability not in CAPABILITIES:
            raise ValueError(f"unknown scorer capability {capability!r}; "
                             f"the capabilities are {', '.join(CAPABILITIES)}")
        return getattr(cls, capability) is not getattr(Scorer, capability)

    @classmethod
    def attribute(cls, name: str) -> Attribute:
        """The metadata of one attribute, by name."""
        for attribute in cls.attributes:
            if attribute.name == name:
                return attribute
        raise KeyError(f"scorer {cls.name!r} has no attribute {name!r}; it has "
                       f"{', '.join(a.name for a in cls.attributes) or 'none'}")


def check_scores(scorer: Scorer, scores: Mapping[str, Any], batch_size: int) -> dict[str, np.ndarray]:
    """Check what `score` returned against the scorer's declared attributes; arrays [B] float."""
    declared = [a.name for a in scorer.attributes]
    if set(scores) != set(declared):
        raise PluginError(f"scorer {scorer.name!r} returned scores {sorted(scores)}, but declares "
                          f"attributes {sorted(declared)}")
    checked = {}
    for name in declared:
        values = np.asarray(scores[name], dtype=np.float32)
        if values.shape != (batch_size,):
            raise PluginError(f"scorer {scorer.name!r}: score {name!r} has shape {values.shape}, "
                              f"expected ({batch_size},) for a batch of {batch_size} images")
        checked[name] = values
    return checked


def check_scorer_class(scorer: type) -> None:
    """Raise ValueError saying what is wrong with a scorer class, for plugin authors' tests."""
    name = getattr(scorer, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{scorer!r} has no string `name`")
    attributes = getattr(scorer, "attributes", None)
    if not isinstance(attributes, (tuple, list)) or not all(isinstance(a, Attribute) for a in attributes):
        raise ValueError(f"scorer {name!r}: `attributes` must be a tuple of sg3probe.scorer.Attribute")
    names = [a.name for a in attributes]
    if len(set(names)) != len(names):
        raise ValueError(f"scorer {name!r} declares an attribute name twice: {names}")
    if not callable(getattr(scorer, "score", None)):
        raise ValueError(f"scorer {name!r} has no `score` method")
