"""toyfaces: a procedural, batched, anti-aliased renderer of 64x64 faces with part masks.

Every part is a signed distance field (negative inside) evaluated on the pixel grid in the
face's own coordinate frame; its coverage is a smoothstep over one pixel of distance, and parts
are composited back to front. Pose is applied by mapping each pixel into the face frame, so the
image and the masks move together. The attributes and their sampling live in `attributes.py`
and are re-exported here.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import torch

from sg3probe.toyworld.attributes import (
    ATTRIBUTES,
    CORRELATIONS,
    NOISE_DIM,
    NUISANCE,
    POSE,
    AttributeInfo,
    FaceParams,
    attributes_from_noise,
    sample_noise,
    sample_params,
)

__all__ = [
    "ATTRIBUTES", "CORRELATIONS", "NOISE_DIM", "NUISANCE", "POSE", "REGIONS", "REGION_COLORS",
    "RESOLUTION", "AttributeInfo", "FaceParams", "RenderOutput", "attributes_from_noise",
    "render", "sample_noise", "sample_params",
]

RESOLUTION = 64

# Region ids are the positions in this tuple; masks hold the id of the topmost part per pixel.
REGIONS: tuple[str, ...] = (
    "background", "skin", "hair", "eyes", "brows", "mouth", "eyeglasses", "clothes",
)
_BACKGROUND, _SKIN, _HAIR, _EYES, _BROWS, _MOUTH, _EYEGLASSES, _CLOTHES = range(len(REGIONS))

# Display colours of the regions (RGB 0-255) for mask pictures.
REGION_COLORS: tuple[tuple[int, int, int], ...] = (
    (40, 40, 40), (240, 190, 150), (140, 80, 30), (60, 120, 255),
    (255, 230, 0), (230, 30, 60), (0, 230, 200), (150, 150, 150),
)

_PIXEL = 2.0 / RESOLUTION  # one pixel in image units; the image spans [-1, 1]
_HEAD_SCALE = 1.2  # face-frame units are this many image units: the head fills the frame like FFHQ

# Colours (RGB in [0, 1]).
_SKIN_DARK = (0.36, 0.22, 0.14)
_SKIN_LIGHT = (0.99, 0.85, 0.74)
_HAIR_PALETTE = ((0.07, 0.06, 0.06), (0.30, 0.17, 0.09), (0.62, 0.27, 0.11), (0.95, 0.82, 0.50))
_SCLERA = (0.97, 0.97, 0.96)
_PUPIL = (0.10, 0.08, 0.08)
_LIPS = (0.72, 0.28, 0.30)
_MOUTH_INSIDE = (0.40, 0.06, 0.09)
_TEETH = (0.98, 0.98, 0.94)
_FRAME = (0.06, 0.06, 0.09)

# Geometry in face-frame units (image half-width = 1, y points down).
_FACE_CENTER_Y = 0.06
_FACE_HALF_HEIGHT = 0.56
_FACE_HALF_WIDTH = (0.38, 0.52)  # face_width 0 -> 1
# The parts are drawn larger than a real face's at 64 px (an eye is about 9 px wide, a frame or
# a brow 2-3 px thick): features of a pixel or two are what a StyleGAN3 trained for a few CPU hours
# cannot draw, and the analyses need generators that draw every part.
_EYE_X, _EYE_Y = 0.19, 0.0
_EYE_HALF_WIDTH = 0.12
_EYE_HALF_HEIGHT = (0.03, 0.10)  # eye_openness 0 -> 1
_PUPIL_RADIUS = 0.06
_BROW_Y = -0.2
_MOUTH_Y = 0.29
_LENS_HALF = (0.16, 0.14)  # eyeglasses: lens half-width and half-height around each eye
_FRAME_HALF_THICKNESS = 0.026


@dataclasses.dataclass(frozen=True)
class RenderOutput:
    """Rendered faces and their ground-truth part masks."""

    images: torch.Tensor  # [batch, 3, 64, 64] float32 in [-1, 1]
    masks: torch.Tensor  # [batch, 64, 64] int64 region ids (indices into REGIONS)


def render(params: FaceParams) -> RenderOutput:
    """Draws the faces that `params` describe, with their part masks."""
    batch = len(params)
    images = torch.empty(batch, 3, RESOLUTION, RESOLUTION)
    masks = torch.empty(batch, RESOLUTION, RESOLUTION, dtype=torch.int64)
    # Chunks of one-channel passes with fewer elements than torch's parallel grain (32768)
    # run serially and inside the CPU caches: with the cores shared, threads that wait on
    # each other at every elementwise op are ten times slower than one thread.
    for start in range(0, batch, _CHUNK):
        stop = start + _CHUNK
        _draw_faces(params.select(slice(start, stop)), _Canvas(images[start:stop], masks[start:stop]))
    return RenderOutput(images=images, masks=masks)


_CHUNK = 7  # 7 x 64 x 64 = 28672 elements


@functools.lru_cache(maxsize=1)
def _pixel_grid() -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates in [-1, 1]: x as [1, 1, W] and y as [1, H, 1]."""
    centers = (torch.arange(RESOLUTION, dtype=torch.float32) + 0.5) * _PIXEL - 1.0
    return centers.view(1, 1, -1), centers.view(1, -1, 1)


def _per_image(values: torch.Tensor) -> torch.Tensor:
    """[batch] -> [batch, 1, 1], to broadcast against [batch, H, W] fields."""
    return values.float().view(-1, 1, 1)


def _color(rgb) -> torch.Tensor:
    """A constant colour as [1, 3, 1, 1]."""
    return torch.tensor(rgb, dtype=torch.float32).view(1, 3, 1, 1)


def _lerp_colors(low, high, t: torch.Tensor) -> torch.Tensor:
    """Per-image colours [batch, 3, 1, 1] between two RGB triples at fractions t [batch]."""
    low, high = torch.tensor(low), torch.tensor(high)
    return (low + t.view(-1, 1) * (high - low)).view(-1, 3, 1, 1)


def _palette(knots, t: torch.Tensor) -> torch.Tensor:
    """Per-image colours [batch, 3, 1, 1], piecewise linear through equally spaced knots."""
    knots = torch.tensor(knots)  # [K, 3]
    position = t.clamp(0, 1) * (len(knots) - 1)
    index = position.floor().long().clamp(max=len(knots) - 2)
    fraction = (position - index).view(-1, 1)
    return (knots[index] + fraction * (knots[index + 1] - knots[index])).view(-1, 3, 1, 1)


def _hsv(hue: torch.Tensor, saturation: float, value: float) -> torch.Tensor:
    """Per-image colours [batch, 3, 1, 1] from hues in [0, 1]."""
    offsets = torch.tensor([5.0, 3.0, 1.0])  # the standard closed form of HSV -> RGB
    k = (offsets + hue.view(-1, 1) * 6.0) % 6.0
    rgb = value - value * saturation * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)
    return rgb.view(-1, 3, 1, 1)


def _coverage(distance: torch.Tensor) -> torch.Tensor:
    """Anti-aliased coverage: a smoothstep from 1 to 0 across one pixel around the boundary."""
    t = (0.5 - distance * (_HEAD_SCALE / _PIXEL)).clamp_(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _ellipse(x, y, half_width, half_height) -> torch.Tensor:
    """Approximate signed distance to an ellipse centred at the origin (exact on the axes)."""
    k0 = torch.sqrt((x / half_width) ** 2 + (y / half_height) ** 2)
    k1 = torch.sqrt((x / half_width**2) ** 2 + (y / half_height**2) ** 2)
    return k0 * (k0 - 1.0) / (k1 + 1e-6)


def _box(x, y, half_width, half_height, radius) -> torch.Tensor:
    """Signed distance to a rounded rectangle centred at the origin."""
    qx = x.abs() - (half_width - radius)
    qy = y.abs() - (half_height - radius)
    outside = torch.sqrt(qx.clamp(min=0) ** 2 + qy.clamp(min=0) ** 2)
    return outside + torch.maximum(qx, qy).clamp_(max=0.0) - radius


def _circle(x, y, radius) -> torch.Tensor:
    """Signed distance to a circle centred at the origin."""
    return torch.sqrt(x * x + y * y) - radius


def _face_frame(params: FaceParams) -> tuple[torch.Tensor, torch.Tensor]:
    """Each pixel's coordinates in the face frame: the inverse of rotate-then-translate."""
    grid_x, grid_y = _pixel_grid()
    radians = _per_image(params.angle) * (math.pi / 180.0)
    cos, sin = torch.cos(radians), torch.sin(radians)
    dx = grid_x - 2.0 * _per_image(params.tx)  # [batch, 1, W]; tx, ty are fractions of the width
    dy = grid_y - 2.0 * _per_image(params.ty)  # [batch, H, 1]
    # Positive angles turn the face counter-clockwise on screen, where y points down.
    x = (cos * dx - sin * dy) / _HEAD_SCALE  # [batch, H, W]
    y = (sin * dx + cos * dy) / _HEAD_SCALE
    return x, y


class _Canvas:
    """Back-to-front compositing of anti-aliased parts into images and region masks, in place.

    `images` [batch, 3, H, W] and `masks` [batch, H, W] are written channel by channel; colours
    are given in [0, 1] and stored in [-1, 1] (compositing is affine, so either order is exact).
    """

    def __init__(self, images: torch.Tensor, masks: torch.Tensor):
        self.channels = images.unbind(dim=1)  # three [batch, H, W] views
        self.mask = masks

    def fill(self, color: torch.Tensor) -> None:
        """Paints every pixel `color` [batch, 3, 1, 1] and labels it background."""
        for channel, value in zip(self.channels, (2.0 * color - 1.0).unbind(dim=1)):
            channel.copy_(value.expand_as(channel))
        self.mask.fill_(_BACKGROUND)

    def paint(self, distance: torch.Tensor, color: torch.Tensor, region: int | None) -> None:
        """Covers the part whose signed distance is `distance` with `color`; labels it `region`."""
        coverage = _coverage(distance)
        for channel, value in zip(self.channels, (2.0 * color - 1.0).unbind(dim=1)):
            channel.lerp_(value.expand_as(channel), coverage)
        if region is not None:
            self.mask.masked_fill_(distance < 0, region)


def _draw_faces(params: FaceParams, canvas: _Canvas) -> None:
    """Draws a few faces onto `canvas`, back to front."""
    x, y = _face_frame(params)
    ax = x.abs()  # the face is mirror-symmetric: paired parts are drawn once on |x|

    skin = _lerp_colors(_SKIN_DARK, _SKIN_LIGHT, params.skin_tone)
    hair = _palette(_HAIR_PALETTE, params.hair_color)
    canvas.fill(_hsv(params.background_hue * 0.75, 0.45, 0.85))

    face_half_width = _per_image(
        _FACE_HALF_WIDTH[0] + (_FACE_HALF_WIDTH[1] - _FACE_HALF_WIDTH[0]) * params.face_width)

    # Hair behind the head: an ellipse cut straight at chin height (a bob).
    hair_y = y + 0.08
    hair_shape = _ellipse(x, hair_y, face_half_width + 0.1, 0.64)
    canvas.paint(torch.maximum(hair_shape, y - 0.36), hair, _HAIR)

    # Neck, then the shirt over the shoulders with a round neckline.
    canvas.paint(_box(x, y - 0.7, 0.15, 0.25, 0.05), skin * 0.8, _SKIN)
    shirt = torch.maximum(_box(x, y - 1.15, 0.8, 0.45, 0.3), -_circle(x, y - 0.68, 0.16))
    canvas.paint(shirt, _hsv(params.shirt_hue, 0.55, 0.6), _CLOTHES)

    # Ears, then the face: an ellipse whose lower half narrows towards the chin.
    canvas.paint(_circle(ax - face_half_width + 0.01, y - 0.04, 0.085), skin * 0.9, _SKIN)
    face_y = y - _FACE_CENTER_Y
    jaw = 1.0 - 0.28 * (face_y / _FACE_HALF_HEIGHT).clamp(min=0.0)
    canvas.paint(_ellipse(x / jaw, face_y, face_half_width, _FACE_HALF_HEIGHT), skin, _SKIN)

    # Nose: a soft shadow along the bridge and under the tip, still skin.
    canvas.paint(_ellipse(x, y - 0.15, 0.045, 0.07), skin * 0.86, _SKIN)

    # Hair in front: the hair shape above a hairline; bangs bring it down to the brows
    # with a zigzag fringe.
    bangs = _per_image(params.bangs)
    hairline_top = -0.33 + 0.15 * bangs
    curvature = 1.3 - 0.8 * bangs
    fringe = 0.035 * bangs * (2.0 * torch.remainder(x / 0.09, 1.0) - 1.0).abs_()
    hairline = hairline_top + curvature * x * x - fringe
    canvas.paint(torch.maximum(hair_shape, y - hairline), hair, _HAIR)

    # Brows, darker than the hair.
    canvas.paint(_box(ax - _EYE_X, y - _BROW_Y, 0.11, 0.035, 0.03), hair * 0.7, _BROWS)

    # Eyes: white ellipses whose height is the openness, and pupils clipped to them.
    eye_x, eye_y = ax - _EYE_X, y - _EYE_Y
    eye_half_height = _per_image(
        _EYE_HALF_HEIGHT[0] + (_EYE_HALF_HEIGHT[1] - _EYE_HALF_HEIGHT[0]) * params.eye_openness)
    sclera = _ellipse(eye_x, eye_y, _EYE_HALF_WIDTH, eye_half_height)
    canvas.paint(sclera, _color(_SCLERA), _EYES)
    canvas.paint(torch.maximum(_circle(eye_x, eye_y, _PUPIL_RADIUS), sclera), _color(_PUPIL), None)

    # Mouth: a closed straight mouth, or an open smile (between two parabolas) with teeth.
    smiling = params.smiling
    mouth_y = y - _MOUTH_Y
    closed = _box(x, mouth_y, 0.15, 0.039, 0.035)  # 3 px tall: whole rows wherever it moves
    x2 = x * x
    upper = -0.03 - 0.7 * x2  # upper lip line; corners turn up
    lower = 0.11 - 3.0 * x2  # lower lip line
    # Cut before the lines meet: a sharp tip would be thinner than a pixel, and its smoothed
    # edge would reach beyond the pixels that the mask gives to the mouth.
    smile = torch.maximum(torch.maximum(upper - mouth_y, mouth_y - lower), x.abs() - 0.19)
    smile_mask = _per_image(smiling)
    mouth = torch.lerp(closed, smile, smile_mask)
    mouth_color = torch.where(smiling.view(-1, 1, 1, 1), _color(_MOUTH_INSIDE), _color(_LIPS))
    canvas.paint(mouth, mouth_color, _MOUTH)
    teeth = torch.maximum(smile, mouth_y - (upper + 0.045)) + 1e3 * (1.0 - smile_mask)
    canvas.paint(teeth, _color(_TEETH), None)

    # Eyeglasses: two rounded lens frames, a bridge and temples out to the face edge.
    lens = _box(eye_x, eye_y, *_LENS_HALF, 0.06).abs_() - _FRAME_HALF_THICKNESS
    bridge = _box(x, y + 0.01, 0.07, 0.022, 0.0)
    temple_start = _EYE_X + _LENS_HALF[0]
    temple_half = (face_half_width - temple_start) * 0.5
    temple = _box(ax - temple_start - temple_half, y + 0.03, temple_half, 0.02, 0.0)
    frames = torch.minimum(torch.minimum(lens, bridge), temple)
    frames = frames + 1e3 * (~params.eyeglasses).float().view(-1, 1, 1)  # absent: far away
    canvas.paint(frames, _color(_FRAME), _EYEGLASSES)
