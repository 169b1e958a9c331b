"""Identity feature extractors for the mapper's identity-preservation term.

An identity extractor is a differentiable callable images [B, C, H, W] in [-1, 1] -> features
[B, F]; the mapper's loss is 1 - cos(ID(edited), ID(original)). StyleCLIP used ArcFace on faces;
here:

- "toyfaces": the 256-unit code of the toy world's scorer network (`ToyFacesNet`), what its
  attribute and pose heads read (needs the `toyfaces` scorer as the run's scorer);
- "pixels": the image average-pooled to 16 x 16, a plain perceptual stand-in for any domain;
- "none": no identity term.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from sg3probe.errors import ConfigError

IDENTITY_NAMES = ("toyfaces", "pixels", "none")


def pixel_features(images: torch.Tensor, size: int = 16) -> torch.Tensor:
    """Images average-pooled to size x size and flattened, [B, C * size * size]."""
    return F.adaptive_avg_pool2d(images, size).flatten(1)


class ToyFacesCode:
    """The code [B, hidden] of a ToyFacesNet (encoder, then the flattening trunk), with gradients."""

    def __init__(self, net) -> None:
        self.net = net.eval().requires_grad_(False)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(next(self.net.parameters()).device, torch.float32)
        for block in self.net.encoder:
            x = block(x)
        return self.net.trunk(x)


def identity_extractor(name: str, scorer=None) -> Callable | None:
    """The extractor called `name` (see IDENTITY_NAMES); "toyfaces" takes its network from the scorer."""
    if name == "none":
        return None
    if name == "pixels":
        return pixel_features
    if name == "toyfaces":
        net = getattr(getattr(scorer, "predictor", None), "net", None)
        if net is None:
            raise ConfigError("identity 'toyfaces' needs the toyfaces scorer (--scorer toyfaces); use "
                              "styleclip.identity=\"pixels\" with other scorers")
        return ToyFacesCode(net)
    raise ConfigError(f"unknown identity extractor {name!r}; choose one of {', '.join(IDENTITY_NAMES)}")
