"""Prompts, the attribute each one targets, and the text templates of prompt embeddings.

A prompt's *target* says which scorer attribute it should change and which decision it should
reach, so that an edit can be measured with the attribute scorer:

    "smiling+"                 the attribute's decision turns on: a binary logit > 0, a continuous
                               value above the middle of its range
    "smiling-"                 ... turns off
    "hair_color>0.833"         a continuous value above (or "<": below) a threshold
    "background_hue=0.74..0.93"  a continuous value inside a range
    ""                         no attribute: measured by text-image similarity only
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from sg3probe.errors import ConfigError

# The toy world's prompts, one per attribute it varies, in the toy text-image model's words
# (sg3probe.toyworld.captions); thresholds are the caption bins' edges.
TOY_PROMPTS = {
    "a smiling face": "smiling+",
    "a face with glasses": "eyeglasses+",
    "a face with bangs": "bangs+",
    "a face with blond hair": "hair_color>0.833",
    "a face with dark skin": "skin_tone<0.333",
    "a face with wide eyes": "eye_openness>0.5",
    "a wide face": "face_width>0.5",
    "a face on a blue background": "background_hue=0.741..0.926",
}
NEUTRAL = "a face"
# The toy text-image model knows only its caption grammar's words, so the prompt alone; for CLIP
# models, templates such as these average out the wording (StyleCLIP used ~80 ImageNet ones).
TOY_TEMPLATES = ("{}",)
CLIP_TEMPLATES = ("a photo of {}.", "a picture of {}.", "an image of {}.", "a close-up photo of {}.",
                  "a good photo of {}.", "a rendering of {}.", "a cropped photo of {}.", "{}")

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)"
_TARGET = re.compile(rf"^\s*([A-Za-z_][\w.]*)\s*"
                     rf"(?:([+-])|([<>])\s*({_NUMBER})|=\s*({_NUMBER})\s*\.\.\s*({_NUMBER}))\s*$")


@dataclass(frozen=True)
class Target:
    """The decision a prompt should bring an attribute to: values in [low, high] (open ends: inf)."""

    attribute: str
    low: float
    high: float
    text: str

    def reached(self, values: np.ndarray) -> np.ndarray:
        """bool [N]: whether each value is at the target decision."""
        values = np.asarray(values, dtype=np.float64)
        return (values > self.low) & (values < self.high)


def parse_target(text: str, attributes: dict) -> Target | None:
    """A Target from its text (see the module docstring), checked against the scorer's attributes
    {name: sg3probe.scorer.Attribute}; None for ""."""
    if not text.strip():
        return None
    match = _TARGET.match(text)
    if match is None:
        raise ConfigError(f"prompt target {text!r}: write 'smiling+', 'smiling-', 'hair_color>0.8', "
                          "'skin_tone<0.3' or 'background_hue=0.7..0.9' (an attribute and its decision)")
    name, sign, comparison, threshold, low, high = match.groups()
    if name not in attributes:
        raise ConfigError(f"prompt target {text!r}: the scorer has no attribute {name!r}; it has "
                          f"{', '.join(attributes)}")
    attribute = attributes[name]
    if sign:
        middle = 0.0 if attribute.kind == "binary" else float(np.mean(attribute.value_range or (0.0, 1.0)))
        return Target(name, middle, np.inf, text) if sign == "+" else Target(name, -np.inf, middle, text)
    if comparison:
        value = float(threshold)
        return Target(name, value, np.inf, text) if comparison == ">" else Target(name, -np.inf, value, text)
    if float(low) >= float(high):
        raise ConfigError(f"prompt target {text!r}: the range must go upwards")
    return Target(name, float(low), float(high), text)
