"""Captions of toy faces, generated from their attributes, for the toy text-image model.

Every attribute of `ATTRIBUTES` is cut into named bins (a *concept*): the binary ones into
no / yes, the continuous ones into ranges with words (hair colour black / brown / auburn / blond
at the palette's knots, skin tone dark / medium / light in thirds, ...). A face's *bins* are one
bin index per concept, a function of its parameters (`face_bins`). A caption states *claims*
about some concepts, each claim one bin, in one of a few phrasings:

    full_caption(bins)            # every concept, fixed wording and order (retrieval, docs):
        "a wide smiling face with blond hair, light skin, wide eyes, glasses and no bangs
         on a blue background"
    random_caption(bins, rng)     # a random subset of concepts, random phrasings and order:
        ("a face with glasses", {"eyeglasses": 1})
    counterfactual(claims, rng)   # the same claims but one, moved to another bin (hard negative)

A caption is *true of* a face when every claim matches the face's bin (`satisfies`); training
treats every true caption in a batch as a positive, so short prompts ("a smiling face",
"a face with red hair") embed near every face they describe. `parse_caption` reads the claims
back from any text written with the grammar's phrases (the inverse of the generators), and
`vocabulary` lists every word the grammar can produce (the text encoder's tokens).
"""
from __future__ import annotations

import dataclasses
import re
from typing import Literal, Mapping, Sequence

import numpy as np

from sg3probe.toyworld.attributes import ATTRIBUTES, FaceParams

# Where a phrase goes: an adjective before "face", an item of the "with ..." list, or a clause
# after it (joined with ", "; the background clause always last).
Slot = Literal["adjective", "with", "clause"]


@dataclasses.dataclass(frozen=True)
class Phrase:
    """One wording of one bin: the words, and where they go in a caption."""

    words: str
    slot: Slot


@dataclasses.dataclass(frozen=True)
class Concept:
    """An attribute cut into bins; bin k covers values in [edges[k-1], edges[k]) (binary: 0 / 1)."""

    attribute: str
    bins: tuple[str, ...]  # bin names, e.g. ("black", "brown", "auburn", "blond")
    edges: tuple[float, ...]  # len(bins) - 1 inner edges; empty for a binary attribute
    phrases: tuple[tuple[Phrase, ...], ...]  # per bin: its wordings, the first one canonical

    def bin_of(self, values: np.ndarray) -> np.ndarray:
        """The bin index [N] of attribute values [N] (binary: 0 / 1; continuous: by the edges)."""
        values = np.asarray(values, dtype=np.float64)
        if not self.edges:
            return (values > 0.5).astype(np.int64)
        return np.searchsorted(np.asarray(self.edges), values, side="right").astype(np.int64)


def _with(*words: str) -> tuple[Phrase, ...]:
    return tuple(Phrase(w, "with") for w in words)


def _background(colour: str) -> tuple[Phrase, ...]:
    return (Phrase(f"on a {colour} background", "clause"),
            Phrase(f"in front of a {colour} background", "clause"))


# Background hue: the renderer paints hue 0.75 * background_hue of the colour wheel, so the value v
# is at 270 v degrees; the edges sit between the named hues (red 0, orange 30, yellow 60, green 120,
# cyan 180, blue 240, purple 270 degrees).
_HUE_EDGES_DEG = (20.0, 45.0, 80.0, 160.0, 200.0, 250.0)

CONCEPTS: tuple[Concept, ...] = (
    Concept("smiling", ("not smiling", "smiling"), (), (
        (Phrase("a closed mouth", "with"), Phrase("a neutral mouth", "with"),
         Phrase("neutral", "adjective"), Phrase("not smiling", "clause")),
        (Phrase("smiling", "adjective"), Phrase("a smile", "with")),
    )),
    Concept("eyeglasses", ("no glasses", "glasses"), (), (
        _with("no glasses", "no eyeglasses") + (Phrase("without glasses", "clause"),),
        _with("glasses", "eyeglasses") + (Phrase("wearing glasses", "clause"),),
    )),
    Concept("bangs", ("no bangs", "bangs"), (), (
        _with("no bangs", "no fringe") + (Phrase("without bangs", "clause"),),
        _with("bangs", "a fringe"),
    )),
    Concept("skin_tone", ("dark", "medium", "light"), (1 / 3, 2 / 3), (
        _with("dark skin"), _with("medium skin"), _with("light skin", "fair skin"),
    )),
    # The hair palette's knots are black (0), dark brown (1/3), auburn (2/3) and blond (1).
    Concept("hair_color", ("black", "brown", "auburn", "blond"), (1 / 6, 1 / 2, 5 / 6), (
        _with("black hair", "dark hair"), _with("brown hair"), _with("auburn hair", "red hair"),
        _with("blond hair", "blonde hair"),
    )),
    Concept("eye_openness", ("narrow", "wide"), (0.5,), (
        _with("narrow eyes", "squinting eyes"), _with("wide eyes", "wide open eyes"),
    )),
    Concept("face_width", ("narrow", "wide"), (0.5,), (
        (Phrase("narrow", "adjective"), Phrase("thin", "adjective")),
        (Phrase("wide", "adjective"), Phrase("broad", "adjective")),
    )),
    Concept("background_hue", ("red", "orange", "yellow", "green", "cyan", "blue", "purple"),
            tuple(d / 270.0 for d in _HUE_EDGES_DEG), (
        _background("red"), _background("orange"), _background("yellow"), _background("green"),
        _background("cyan") + _background("turquoise"), _background("blue"),
        _background("purple") + _background("violet"),
    )),
)

CONCEPT_NAMES = tuple(c.attribute for c in CONCEPTS)
_CONCEPT_INDEX = {name: i for i, name in enumerate(CONCEPT_NAMES)}
# The order of concepts in a full caption.
_FULL_ORDER = ("face_width", "smiling", "hair_color", "skin_tone", "eye_openness", "eyeglasses",
               "bangs", "background_hue")
_GLUE = ("a", "face", "with", "and")  # the grammar's own words besides the phrases'


# -- bins of faces ---------------------------------------------------------------------------------

def face_bins(params: FaceParams) -> np.ndarray:
    """Bin indices int64 [N, len(CONCEPTS)] of a batch of faces, columns in CONCEPTS order."""
    values = params.attribute_values().numpy()  # [N, len(ATTRIBUTES)]
    columns = {info.name: i for i, info in enumerate(ATTRIBUTES)}
    return np.stack([c.bin_of(values[:, columns[c.attribute]]) for c in CONCEPTS], axis=1)


def bin_names(bins: Sequence[int]) -> dict[str, str]:
    """{attribute: bin name} of one face's bins (e.g. {"hair_color": "blond", ...})."""
    return {c.attribute: c.bins[int(b)] for c, b in zip(CONCEPTS, bins)}


# -- writing captions ------------------------------------------------------------------------------

def _join_and(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def compose(phrases: Sequence[Phrase]) -> str:
    """The caption that puts `phrases` in their slots, in the given order within each slot."""
    adjectives = [p.words for p in phrases if p.slot == "adjective"]
    withs = [p.words for p in phrases if p.slot == "with"]
    clauses = [p.words for p in phrases if p.slot == "clause" and not p.words.endswith("background")]
    backgrounds = [p.words for p in phrases if p.slot == "clause" and p.words.endswith("background")]
    text = " ".join(["a", *adjectives, "face"])
    if withs:
        text += " with " + _join_and(withs)
    for index, clause in enumerate(clauses):
        text += (" " if index == 0 and not withs else ", ") + clause
    # The background clause reads best last.
    for clause in backgrounds:
        text += " " + clause
    return text


def caption(claims: Mapping[str, int], rng: np.random.Generator | None = None) -> str:
    """A caption stating `claims` ({attribute: bin}); canonical wording and order without `rng`,
    a random wording per claim and a random order with one."""
    unknown = set(claims) - set(CONCEPT_NAMES)
    if unknown:
        raise ValueError(f"unknown attribute(s) {sorted(unknown)}; the captions know {', '.join(CONCEPT_NAMES)}")
    if rng is None:
        names = [name for name in _FULL_ORDER if name in claims]
        return compose([CONCEPTS[_CONCEPT_INDEX[n]].phrases[int(claims[n])][0] for n in names])
    names = list(claims)
    rng.shuffle(names)
    phrases = []
    for name in names:
        options = CONCEPTS[_CONCEPT_INDEX[name]].phrases[int(claims[name])]
        phrases.append(options[int(rng.integers(len(options)))])
    return compose(phrases)


def full_caption(bins: Sequence[int]) -> str:
    """The canonical caption naming every concept of one face (its bins [len(CONCEPTS)])."""
    return caption({c.attribute: int(b) for c, b in zip(CONCEPTS, bins)})


def full_captions(params: FaceParams) -> list[str]:
    """The canonical full caption of each face of a batch."""
    return [full_caption(row) for row in face_bins(params)]


def random_claims(bins: Sequence[int], rng: np.random.Generator, full: float = 0.2,
                  empty: float = 0.02, include: str | None = None) -> dict[str, int]:
    """A random subset of one face's claims: all of them with probability `full`, none with
    probability `empty`, otherwise k of them, k uniform in 1..len(CONCEPTS), so that one-attribute
    captions ("a smiling face") are as common as long ones; the attribute `include` is always claimed."""
    draw = rng.random()
    if draw < full:
        count = len(CONCEPTS)
    elif draw < full + empty:
        count = 0
    else:
        count = int(rng.integers(1, len(CONCEPTS) + 1))
    chosen = set(rng.choice(len(CONCEPTS), size=count, replace=False).tolist())
    if include is not None:
        chosen.add(_CONCEPT_INDEX[include])
    return {CONCEPTS[i].attribute: int(bins[i]) for i in sorted(chosen)}


def bin_range(attribute: str, index: int) -> tuple[float, float]:
    """The values [low, high) of one bin of a continuous attribute (its range is [0, 1])."""
    edges = (0.0, *CONCEPTS[_CONCEPT_INDEX[attribute]].edges, 1.0)
    return edges[index], edges[index + 1]


def random_caption(bins: Sequence[int], rng: np.random.Generator, full: float = 0.2,
                   empty: float = 0.02) -> tuple[str, dict[str, int]]:
    """A training caption of one face and its claims (`random_claims`), in random wording and order."""
    claims = random_claims(bins, rng, full=full, empty=empty)
    return caption(claims, rng), claims


def counterfactual(claims: Mapping[str, int], rng: np.random.Generator) -> dict[str, int] | None:
    """The claims with one of them (chosen at random) moved to another bin of its attribute: a
    caption that is false of the face but differs from its true one in one attribute only (a hard
    negative). None for a caption without claims."""
    if not claims:
        return None
    names = list(claims)
    name = names[int(rng.integers(len(names)))]
    size = len(CONCEPTS[_CONCEPT_INDEX[name]].bins)
    return {**claims, name: (int(claims[name]) + int(rng.integers(1, size))) % size}


def claims_matrix(claims: Sequence[Mapping[str, int]]) -> np.ndarray:
    """Claims as int64 [N, len(CONCEPTS)]: the claimed bin, or -1 where a caption says nothing."""
    matrix = np.full((len(claims), len(CONCEPTS)), -1, dtype=np.int64)
    for row, claim in enumerate(claims):
        for name, value in claim.items():
            matrix[row, _CONCEPT_INDEX[name]] = int(value)
    return matrix


def satisfies(bins: np.ndarray, claims: np.ndarray) -> np.ndarray:
    """bool [N_faces, N_captions]: whether each caption (claims [M, C], -1 = no claim) is true of
    each face (bins [N, C])."""
    bins, claims = np.asarray(bins), np.asarray(claims)
    agree = (claims[None, :, :] < 0) | (bins[:, None, :] == claims[None, :, :])  # [N, M, C]
    return agree.all(axis=2)


# -- reading captions ------------------------------------------------------------------------------

def words(text: str) -> list[str]:
    """The lower-case words of a text (letters only; punctuation and digits separate words)."""
    return re.findall(r"[a-z]+", text.lower())


def vocabulary() -> tuple[str, ...]:
    """Every word the caption grammar can produce, sorted."""
    found = set(_GLUE)
    for concept in CONCEPTS:
        for options in concept.phrases:
            for phrase in options:
                found.update(words(phrase.words))
    return tuple(sorted(found))


def _surface_forms() -> list[tuple[tuple[str, ...], str, int]]:
    """(words, attribute, bin) of every phrase, longest first (so "no glasses" wins over "glasses")."""
    forms = []
    for concept in CONCEPTS:
        for index, options in enumerate(concept.phrases):
            for phrase in options:
                forms.append((tuple(words(phrase.words)), concept.attribute, index))
    return sorted(forms, key=lambda form: -len(form[0]))


_FORMS = _surface_forms()


def parse_caption(text: str) -> dict[str, int]:
    """The claims ({attribute: bin}) a text makes with the grammar's phrases.

    Longer phrases are matched first and consume their words, so "a wide face with narrow eyes"
    reads as face_width wide, eye_openness narrow. Raises ValueError when one text names two bins
    of the same attribute.
    """
    tokens: list[str | None] = list(words(text))
    claims: dict[str, int] = {}
    for form, attribute, index in _FORMS:
        size = len(form)
        start = 0
        while start + size <= len(tokens):
            if tuple(tokens[start:start + size]) == form:
                if claims.get(attribute, index) != index:
                    raise ValueError(f"{text!r} names two values of {attribute}")
                claims[attribute] = index
                tokens[start:start + size] = [None] * size
                start += size
            else:
                start += 1
    return claims
