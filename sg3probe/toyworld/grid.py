"""Pictures of region masks: each region in its REGION_COLORS colour, tiled like image grids."""
from __future__ import annotations

import torch
from PIL import Image

from sg3probe.imaging import tile, to_pil
from sg3probe.toyworld.render import REGION_COLORS


def mask_grid(masks: torch.Tensor, columns: int | None = None) -> Image.Image:
    """A grid picture of region masks [batch, H, W], laid out as `imaging.image_grid` lays out images."""
    if masks.ndim != 3:
        raise ValueError(f"masks must have shape [batch, H, W]; got {list(masks.shape)}")
    palette = torch.tensor(REGION_COLORS, dtype=torch.uint8)
    return to_pil(tile(palette[masks.detach().cpu().long()].numpy(), columns))
