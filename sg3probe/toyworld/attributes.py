"""Ground-truth attributes of the toy faces and their sampling from standard-normal noise.

Every attribute is a deterministic function of a noise vector of `NOISE_DIM` independent
standard normals, so that a generator can be trained to map its latent z to renders of the
attributes that z stands for. Binary attributes threshold one noise dimension; continuous ones
and the pose pass a (possibly mixed) unit-variance normal through the normal CDF, which makes
them uniform on their range.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch

NOISE_DIM = 12

# Noise dimensions, one per factor; the two correlated pairs mix a shared dimension below.
_SMILING, _EYEGLASSES, _BANGS = 0, 1, 2
_SKIN_TONE, _HAIR_COLOR, _EYE_OPENNESS, _FACE_WIDTH, _BACKGROUND_HUE = 3, 4, 5, 6, 7
_ANGLE, _TX, _TY = 8, 9, 10
_SHIRT_HUE = 11

# Mixing weight of the shared dimension in the correlated pairs (a Gaussian copula with
# correlation 0.5, which gives a Pearson correlation of about 0.48 between the uniforms).
_MIX = 0.5

MAX_ANGLE = 30.0  # degrees, unaligned pose
MAX_TRANSLATE = 0.12  # fraction of the image width, unaligned pose


def _threshold(frequency: float) -> float:
    """The standard-normal threshold above which a fraction `frequency` of samples lies."""
    return math.sqrt(2.0) * torch.erfinv(torch.tensor(1.0 - 2.0 * frequency)).item()


@dataclasses.dataclass(frozen=True)
class AttributeInfo:
    """What one ground-truth factor is, how it is distributed and what it changes in the image."""

    name: str
    kind: Literal["binary", "continuous"]
    low: float
    high: float
    distribution: str
    changes: str
    noise_dims: tuple[int, ...]
    frequency: float | None = None  # P(attribute is on), binary attributes only


ATTRIBUTES: tuple[AttributeInfo, ...] = (
    AttributeInfo("smiling", "binary", 0.0, 1.0, "Bernoulli(0.5): noise[0] > 0.0",
                  "mouth: open smile with teeth instead of a closed straight mouth",
                  (_SMILING,), frequency=0.5),
    AttributeInfo("eyeglasses", "binary", 0.0, 1.0, "Bernoulli(0.35): noise[1] > 0.385",
                  "dark frames around both eyes, with bridge and temples",
                  (_EYEGLASSES,), frequency=0.35),
    AttributeInfo("bangs", "binary", 0.0, 1.0, "Bernoulli(0.4): noise[2] > 0.253",
                  "hair: a fringe covering the forehead down to just above the brows",
                  (_BANGS,), frequency=0.4),
    AttributeInfo("skin_tone", "continuous", 0.0, 1.0, "Uniform(0, 1) = Phi(noise[3])",
                  "skin colour of face, ears and neck: 0 dark brown, 1 light",
                  (_SKIN_TONE,)),
    AttributeInfo("hair_color", "continuous", 0.0, 1.0,
                  "Uniform(0, 1) = Phi(0.5 noise[3] + 0.866 noise[4]); correlated with skin_tone",
                  "hair and brow colour: 0 black, 0.33 dark brown, 0.67 auburn, 1 blond",
                  (_SKIN_TONE, _HAIR_COLOR)),
    AttributeInfo("eye_openness", "continuous", 0.0, 1.0,
                  "Uniform(0, 1) = Phi(-0.5 noise[0] + 0.866 noise[5]); smiling narrows the eyes",
                  "eye height: 0 nearly closed (1.4 px), 1 wide open (6 px)",
                  (_SMILING, _EYE_OPENNESS)),
    AttributeInfo("face_width", "continuous", 0.0, 1.0, "Uniform(0, 1) = Phi(noise[6])",
                  "face outline half-width 14.6 px to 20 px (of 64); ears, hair and glasses follow",
                  (_FACE_WIDTH,)),
    AttributeInfo("background_hue", "continuous", 0.0, 1.0, "Uniform(0, 1) = Phi(noise[7])",
                  "background colour, hue 0 to 0.75 of the colour wheel (red, yellow, green, blue, violet)",
                  (_BACKGROUND_HUE,)),
)

POSE: tuple[AttributeInfo, ...] = (
    AttributeInfo("angle", "continuous", -MAX_ANGLE, MAX_ANGLE,
                  "aligned: 0; unaligned: Uniform(-30, 30) = 30 (2 Phi(noise[8]) - 1)",
                  "degrees of rotation about the image centre, positive = counter-clockwise on screen",
                  (_ANGLE,)),
    AttributeInfo("tx", "continuous", -MAX_TRANSLATE, MAX_TRANSLATE,
                  "aligned: 0; unaligned: Uniform(-0.12, 0.12) = 0.12 (2 Phi(noise[9]) - 1)",
                  "horizontal shift as a fraction of the image width, positive = right",
                  (_TX,)),
    AttributeInfo("ty", "continuous", -MAX_TRANSLATE, MAX_TRANSLATE,
                  "aligned: 0; unaligned: Uniform(-0.12, 0.12) = 0.12 (2 Phi(noise[10]) - 1)",
                  "vertical shift as a fraction of the image width, positive = down",
                  (_TY,)),
)

# Nuisance factor that is not an attribute: it varies the image but no scorer predicts it.
NUISANCE: tuple[AttributeInfo, ...] = (
    AttributeInfo("shirt_hue", "continuous", 0.0, 1.0, "Uniform(0, 1) = Phi(noise[11])",
                  "colour of the shirt at the bottom of the image (hue 0 to 1, wraps around)",
                  (_SHIRT_HUE,)),
)

# Pearson correlations between attributes that the sampling builds in (all others are 0),
# as measured on 10^6 samples.
CORRELATIONS: dict[tuple[str, str], float] = {
    ("skin_tone", "hair_color"): 0.483,
    ("smiling", "eye_openness"): -0.398,
}

_THRESHOLDS = {info.name: _threshold(info.frequency) for info in ATTRIBUTES if info.kind == "binary"}


@dataclasses.dataclass(frozen=True)
class FaceParams:
    """Everything that decides one batch of toy faces; each field is a tensor of shape [batch]."""

    smiling: torch.Tensor  # bool
    eyeglasses: torch.Tensor  # bool
    bangs: torch.Tensor  # bool
    skin_tone: torch.Tensor  # float32 in [0, 1]
    hair_color: torch.Tensor
    eye_openness: torch.Tensor
    face_width: torch.Tensor
    background_hue: torch.Tensor
    angle: torch.Tensor  # float32 degrees
    tx: torch.Tensor  # float32, fraction of the image width
    ty: torch.Tensor
    shirt_hue: torch.Tensor  # float32 in [0, 1], nuisance

    def __post_init__(self) -> None:
        shapes = {field.name: tuple(getattr(self, field.name).shape) for field in dataclasses.fields(self)}
        if len(set(shapes.values())) != 1 or len(next(iter(shapes.values()))) != 1:
            raise ValueError(f"every FaceParams field must be a tensor of the same shape [batch]; got {shapes}")

    def __len__(self) -> int:
        return self.smiling.shape[0]

    def replace(self, **changes: torch.Tensor) -> FaceParams:
        """A copy with the named fields replaced (e.g. `params.replace(smiling=~params.smiling)`)."""
        return dataclasses.replace(self, **changes)

    def select(self, index) -> FaceParams:
        """The faces at `index` (a slice, an index tensor or a boolean mask) as a new batch."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return FaceParams(**{field.name: getattr(self, field.name)[index] for field in dataclasses.fields(self)})

    def attribute_values(self) -> torch.Tensor:
        """The attributes as float32 [batch, len(ATTRIBUTES)], columns in ATTRIBUTES order."""
        return torch.stack([getattr(self, info.name).float() for info in ATTRIBUTES], dim=1)

    def pose_values(self) -> torch.Tensor:
        """The pose as float32 [batch, 3]: angle (degrees), tx, ty (fractions of the width)."""
        return torch.stack([self.angle, self.tx, self.ty], dim=1).float()


def _uniform(normal: torch.Tensor) -> torch.Tensor:
    """Maps a standard normal to Uniform(0, 1) through its CDF."""
    return 0.5 * (1.0 + torch.erf(normal / math.sqrt(2.0)))


def attributes_from_noise(noise: torch.Tensor, aligned: bool) -> FaceParams:
    """The face parameters that standard-normal `noise` [batch, NOISE_DIM] stands for."""
    if noise.ndim != 2 or noise.shape[1] != NOISE_DIM:
        raise ValueError(f"noise must have shape [batch, {NOISE_DIM}]; got {list(noise.shape)}")
    noise = noise.float()
    keep = math.sqrt(1.0 - _MIX**2)
    if aligned:
        zeros = torch.zeros_like(noise[:, 0])
        angle, tx, ty = zeros, zeros, zeros.clone()
    else:
        angle = MAX_ANGLE * (2.0 * _uniform(noise[:, _ANGLE]) - 1.0)
        tx = MAX_TRANSLATE * (2.0 * _uniform(noise[:, _TX]) - 1.0)
        ty = MAX_TRANSLATE * (2.0 * _uniform(noise[:, _TY]) - 1.0)
    return FaceParams(
        smiling=noise[:, _SMILING] > _THRESHOLDS["smiling"],
        eyeglasses=noise[:, _EYEGLASSES] > _THRESHOLDS["eyeglasses"],
        bangs=noise[:, _BANGS] > _THRESHOLDS["bangs"],
        skin_tone=_uniform(noise[:, _SKIN_TONE]),
        hair_color=_uniform(_MIX * noise[:, _SKIN_TONE] + keep * noise[:, _HAIR_COLOR]),
        eye_openness=_uniform(-_MIX * noise[:, _SMILING] + keep * noise[:, _EYE_OPENNESS]),
        face_width=_uniform(noise[:, _FACE_WIDTH]),
        background_hue=_uniform(noise[:, _BACKGROUND_HUE]),
        angle=angle,
        tx=tx,
        ty=ty,
        shirt_hue=_uniform(noise[:, _SHIRT_HUE]),
    )


def sample_noise(seed: int, n: int) -> torch.Tensor:
    """Standard-normal noise [n, NOISE_DIM] from a torch.Generator seeded with `seed`."""
    if n < 1:
        raise ValueError(f"n must be a positive number of faces; got {n}")
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, NOISE_DIM, generator=generator)


def sample_params(seed: int, n: int, aligned: bool) -> FaceParams:
    """`n` faces drawn from the toy distribution, deterministic in `seed`."""
    return attributes_from_noise(sample_noise(seed, n), aligned)
