"""The toy world's text-image model (`toyclip`): a small CLIP trained on renders and their captions.

`ToyClipNet` holds both encoders and the temperature:

- image encoder: five blocks of two 3x3 conv + BatchNorm + ReLU at 64, 32, 16, 8 and 4 px with
  12, 24, 48, 96 and 128 channels (strided conv to go down), global average pooling, and a
  linear projection to `embedding_dim`;
- text encoder: the caption grammar's words (`captions.vocabulary()`, plus padding and unknown
  tokens) embedded and read by a bidirectional GRU (word order matters: "no glasses" is not
  "glasses"); its outputs averaged over the words, projected to `embedding_dim`;
- a learnable temperature: logits = exp(logit_scale) * cosine similarity, as in CLIP.

Training (`train_toyclip`) renders a fresh batch every step (half aligned, half unaligned, seeded
from the step like the scorer training, and degraded with the same `augment`): half of it faces,
half their *twins* (`twin_faces`: the same face with one shape attribute moved to another bin).
Each face gets one random caption (`captions.random_claims`: a random subset of its attributes,
always including the one its twin changed, in random wording and order) and a counterfactual one
(`captions.counterfactual`: the same claims with one moved to another bin). The loss is a
symmetric InfoNCE in which every caption that is *true of* an image is a positive (a soft target
spread evenly over them; a short caption such as "a smiling face" is true of many faces of the
batch, and calling it a negative for all but one would teach the model that it is not), plus an
InfoNCE within each twin pair (`twin_loss`). Without the twins, colours (hair, skin, background)
and the face width, which make most captions of a batch unique already, carried the loss, and
the one-bit attributes (smile, glasses, bangs) and the eyes stayed at chance.

Weights are a plain dict (`save_toyclip` / `load_toyclip` mirror each other) that
`torch.load(weights_only=True)` reads; the loader refuses a file trained with another vocabulary.
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from sg3probe.errors import CheckpointError
from sg3probe.toyworld import captions
from sg3probe.toyworld.attributes import FaceParams, sample_params
from sg3probe.toyworld.render import RESOLUTION, render
from sg3probe.toyworld.scorer_training import (HELD_OUT_SEED, augment, plain_values, step_logger,
                                                warmup_cosine_schedule)
from sg3probe.toyworld.scorers import conv_block

FORMAT = "sg3probe-toyclip"
FORMAT_VERSION = 1
PAD, UNKNOWN = "<pad>", "<unk>"

# The gate of issue 8 part 1, on held-out renders.
GATES = {"image_to_text_top1": 0.8}
CANDIDATES = 10  # the right caption among this many


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """Everything that decides a toyclip training run."""

    steps: int = 1200
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    augment: bool = True
    full: float = 0.2  # probability that a training caption names every attribute (else 0 to all)
    empty: float = 0.02  # probability that it names none ("a face")
    hard_negatives: bool = True  # twin faces and counterfactual captions (see captioned_batch)
    twin_weight: float = 1.0  # weight of the loss within twin pairs (twin_loss)
    channels: tuple[int, ...] = (12, 24, 48, 96, 128)
    word_dim: int = 64
    text_hidden: int = 128
    embedding_dim: int = 64


# -- the network -----------------------------------------------------------------------------------

class ToyClipNet(nn.Module):
    """Image and text encoders into one unit-norm embedding space, and CLIP's temperature."""

    def __init__(self, vocabulary: Sequence[str], channels: tuple[int, ...] = (12, 24, 48, 96, 128),
                 word_dim: int = 64, text_hidden: int = 128, embedding_dim: int = 64) -> None:
        super().__init__()
        if len(channels) != 5:
            raise ValueError(f"channels must list 5 widths (64, 32, 16, 8, 4 px); got {channels}")
        self.vocabulary = (PAD, UNKNOWN, *vocabulary)
        self._token_ids = {word: i for i, word in enumerate(self.vocabulary)}
        self.channels = tuple(channels)
        self.word_dim, self.text_hidden, self.embedding_dim = word_dim, text_hidden, embedding_dim
        widths = (3, *channels)
        self.image_blocks = nn.Sequential(
            *(conv_block(widths[i], widths[i + 1], stride=1 if i == 0 else 2) for i in range(5)))
        self.image_projection = nn.Linear(channels[-1], embedding_dim)
        self.word_embedding = nn.Embedding(len(self.vocabulary), word_dim, padding_idx=0)
        self.text_rnn = nn.GRU(word_dim, text_hidden, batch_first=True, bidirectional=True)
        self.text_projection = nn.Linear(2 * text_hidden, embedding_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial value

    def extra_repr(self) -> str:
        return (f"vocabulary={len(self.vocabulary)} words, channels={self.channels}, "
                f"word_dim={self.word_dim}, text_hidden={self.text_hidden}, embedding_dim={self.embedding_dim}")

    def config(self) -> dict[str, Any]:
        """What `load_toyclip` needs to rebuild this network (besides the vocabulary)."""
        return {"channels": list(self.channels), "word_dim": self.word_dim,
                "text_hidden": self.text_hidden, "embedding_dim": self.embedding_dim}

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids int64 [N, L] (padded with 0) and lengths [N] of texts; unknown words become
        <unk>, and a text without words is one <unk>."""
        unknown = self._token_ids[UNKNOWN]
        rows = [[self._token_ids.get(w, unknown) for w in captions.words(text)] or [unknown]
                for text in texts]
        ids = torch.zeros(len(rows), max(len(r) for r in rows), dtype=torch.int64)
        for i, row in enumerate(rows):
            ids[i, :len(row)] = torch.tensor(row)
        return ids, torch.tensor([len(r) for r in rows])

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings [B, D] of images [B, 3, 64, 64] in [-1, 1]; differentiable."""
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, RESOLUTION, RESOLUTION):
            raise ValueError(f"images must be [B, 3, {RESOLUTION}, {RESOLUTION}]; got {list(images.shape)}")
        features = self.image_blocks(images).mean(dim=(2, 3))  # [B, C]
        return F.normalize(self.image_projection(features), dim=-1)

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit-norm embeddings [N, D] of texts."""
        if isinstance(texts, str) or len(texts) == 0:
            raise ValueError("texts must be a non-empty list of strings")
        ids, lengths = self.tokenize(texts)
        device = self.word_embedding.weight.device
        packed = nn.utils.rnn.pack_padded_sequence(self.word_embedding(ids.to(device)), lengths,
                                                   batch_first=True, enforce_sorted=False)
        outputs, _ = self.text_rnn(packed)
        outputs, _ = nn.utils.rnn.pad_packed_sequence(outputs, batch_first=True)  # [N, L, 2 hidden]
        # The mean over the words, not the final states: those mostly remember the words read
        # last, and a claim in the middle of a long caption would fade.
        mask = (torch.arange(outputs.shape[1])[None, :] < lengths[:, None]).to(outputs)  # [N, L]
        pooled = (outputs * mask[:, :, None]).sum(1) / lengths[:, None].to(outputs)
        return F.normalize(self.text_projection(pooled), dim=-1)


# -- weights ---------------------------------------------------------------------------------------

def save_toyclip(net: ToyClipNet, path: str | Path, training: dict[str, Any] | None = None) -> None:
    """Write the net as {format, config, vocabulary, state_dict (float16), training}, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().to(torch.float16 if tensor.is_floating_point() else tensor.dtype)
             for name, tensor in net.state_dict().items()}
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": net.config(),
               "vocabulary": list(net.vocabulary[2:]), "state_dict": state, "training": training or {}}
    temporary = path.with_name(path.name + ".tmp")
    torch.save(payload, temporary)
    temporary.replace(path)


def load_toyclip(path: str | Path, device: Any = "cpu") -> ToyClipNet:
    """Rebuild a `ToyClipNet` (eval mode, no gradients) from a file written by `save_toyclip`."""
    path = Path(path)
    retrain = f"retrain it with `sg3probe toy train-textimage --out {path.parent}`"
    if not path.is_file():
        raise CheckpointError(f"toy text-image weights {path} are missing; {retrain}")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a toy text-image model file (format {FORMAT!r})")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has toyclip format version {payload.get('format_version')}; "
                              f"this sg3probe reads version {FORMAT_VERSION}")
    if tuple(payload["vocabulary"]) != captions.vocabulary():
        raise CheckpointError(f"{path} was trained with another caption vocabulary than this "
                              f"sg3probe's; {retrain}")
    config = payload["config"]
    net = ToyClipNet(payload["vocabulary"], channels=tuple(config["channels"]), word_dim=config["word_dim"],
                     text_hidden=config["text_hidden"], embedding_dim=config["embedding_dim"])
    net.load_state_dict({name: tensor.float() if tensor.is_floating_point() else tensor
                         for name, tensor in payload["state_dict"].items()})
    return net.to(device).eval().requires_grad_(False)


def training_record(path: str | Path) -> dict[str, Any]:
    """The `training` entry of a weights file (configuration, time, held-out figures)."""
    return torch.load(Path(path), map_location="cpu", weights_only=True).get("training", {})


# -- training --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class CaptionedBatch:
    """Rendered faces, their bins, and captions with their claims: one per face (text i is true of
    face i), then the hard negatives (each false of the face it was written from)."""

    images: torch.Tensor  # [B, 3, 64, 64]
    bins: np.ndarray  # [B, len(CONCEPTS)]
    texts: list[str]  # [T >= B]
    claims: np.ndarray  # [T, len(CONCEPTS)], -1 where a caption says nothing
    pairs: int = 0  # faces i and pairs + i (i < pairs) are twins, and so are texts i and pairs + i

    def positives(self) -> torch.Tensor:
        """bool [B faces, T texts]: which caption is true of which face."""
        return torch.from_numpy(captions.satisfies(self.bins, self.claims))


def _faces(seed: int, batch_size: int) -> FaceParams:
    """`batch_size` faces, the first half aligned, the rest unaligned (as `render_batch`)."""
    aligned = sample_params(2 * seed, batch_size // 2, aligned=True)
    unaligned = sample_params(2 * seed + 1, batch_size - batch_size // 2, aligned=False)
    return FaceParams(**{f.name: torch.cat([getattr(aligned, f.name), getattr(unaligned, f.name)])
                         for f in dataclasses.fields(FaceParams)})


# The attributes that twins change: the shapes. Colours (skin, hair, background) are learned from
# the ordinary captions within a few hundred steps; the shapes, each a small part of the image,
# stay near chance without a contrast between faces that differ in them alone.
TWIN_ATTRIBUTES = ("smiling", "eyeglasses", "bangs", "eye_openness", "face_width")


def twin_faces(params: FaceParams, rng: np.random.Generator) -> tuple[FaceParams, list[str]]:
    """The same faces with one attribute each (chosen uniformly among `TWIN_ATTRIBUTES`) moved to
    another of its bins, and the attribute changed per face. A continuous attribute gets a value
    drawn uniformly from the middle 80 % of the new bin, so that the twin is clearly in it."""
    changed = [TWIN_ATTRIBUTES[int(i)] for i in rng.integers(len(TWIN_ATTRIBUTES), size=len(params))]
    bins = captions.face_bins(params)
    values = {name: getattr(params, name).clone() for name in captions.CONCEPT_NAMES}
    for face, name in enumerate(changed):
        column = captions.CONCEPT_NAMES.index(name)
        size = len(captions.CONCEPTS[column].bins)
        target = (int(bins[face, column]) + int(rng.integers(1, size))) % size
        if values[name].dtype == torch.bool:
            values[name][face] = bool(target)
        else:
            low, high = captions.bin_range(name, target)
            values[name][face] = low + (0.1 + 0.8 * rng.random()) * (high - low)
    return params.replace(**values), changed


def captioned_batch(seed: int, batch_size: int, full: float = 0.2, empty: float = 0.02,
                    hard_negatives: bool = True) -> CaptionedBatch:
    """Renders and random captions of `batch_size` faces, all from `seed`.

    With `hard_negatives`, half the faces are twins of the other half (`twin_faces`: one attribute
    moved to another bin), the caption of a face and of its twin both name that attribute, and
    every caption gets a counterfactual caption (`captions.counterfactual`) beside it.
    """
    rng = np.random.default_rng(seed)
    if hard_negatives:
        originals = _faces(seed, batch_size // 2)
        twins, changed = twin_faces(originals, rng)
        params = FaceParams(**{f.name: torch.cat([getattr(originals, f.name), getattr(twins, f.name)])
                               for f in dataclasses.fields(FaceParams)})
        changed = changed + changed
    else:
        params = _faces(seed, batch_size)
        changed = [None] * batch_size
    bins = captions.face_bins(params)
    claims = [captions.random_claims(row, rng, full=full, empty=empty, include=name)
              for row, name in zip(bins, changed)]
    if hard_negatives:
        claims += [c for c in (captions.counterfactual(c, rng) for c in claims) if c is not None]
    return CaptionedBatch(images=render(params).images, bins=bins,
                          texts=[captions.caption(c, rng) for c in claims],
                          claims=captions.claims_matrix(claims), pairs=batch_size // 2 if hard_negatives else 0)


def contrastive_loss(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor,
                     logit_scale: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE with several positives: the mean of the image->text and text->image cross
    entropies, each against a target spread evenly over the positives (bool [B images, T texts]).
    Every image needs a positive; texts true of no image (hard negatives) only count image->text."""
    logits = logit_scale.exp() * image_embeddings @ text_embeddings.T  # [B, T]
    positives = positives.float()
    image_to_text = -(positives / positives.sum(1, keepdim=True) * F.log_softmax(logits, dim=1)).sum(1)
    described = positives.sum(0) > 0
    targets = positives[:, described]
    text_to_image = -(targets / targets.sum(0, keepdim=True) * F.log_softmax(logits[:, described], dim=0)).sum(0)
    return 0.5 * (image_to_text.mean() + text_to_image.mean())


def twin_loss(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor, logit_scale: torch.Tensor,
              pairs: int) -> torch.Tensor:
    """InfoNCE within each twin pair: faces i and pairs + i against their own two captions (each
    true of its face only), both ways; the mean over pairs of the four 2-way cross entropies."""
    a, b = image_embeddings[:pairs], image_embeddings[pairs:2 * pairs]  # [P, D]
    text_a, text_b = text_embeddings[:pairs], text_embeddings[pairs:2 * pairs]
    scale = logit_scale.exp()
    same_a, same_b = scale * (a * text_a).sum(1), scale * (b * text_b).sum(1)  # [P]
    a_to_b, b_to_a = scale * (a * text_b).sum(1), scale * (b * text_a).sum(1)  # image x, text y
    # -log softmax of the right entry among two = softplus(wrong - right).
    return 0.25 * (F.softplus(a_to_b - same_a) + F.softplus(b_to_a - same_b)  # image -> text
                   + F.softplus(b_to_a - same_a) + F.softplus(a_to_b - same_b)).mean()  # text -> image


def train_toyclip(config: TrainingConfig = TrainingConfig(),
                  progress: Callable[[int, dict[str, float]], None] | None = None) -> ToyClipNet:
    """Train a `ToyClipNet` from scratch on fresh renders and captions; deterministic in `config.seed`."""
    if config.steps < 1:
        raise ValueError(f"steps must be at least 1; got {config.steps}")
    torch.manual_seed(config.seed)
    net = ToyClipNet(captions.vocabulary(), channels=config.channels, word_dim=config.word_dim,
                     text_hidden=config.text_hidden, embedding_dim=config.embedding_dim)
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = warmup_cosine_schedule(optimizer, config.steps)
    augment_generator = torch.Generator().manual_seed(config.seed)
    net.train()
    for step in range(config.steps):
        batch = captioned_batch(config.seed * 1_000_003 + step, config.batch_size, config.full, config.empty,
                                config.hard_negatives)
        images = augment(batch.images, augment_generator) if config.augment else batch.images
        image_embeddings, text_embeddings = net.encode_image(images), net.encode_text(batch.texts)
        loss = contrastive_loss(image_embeddings, text_embeddings, net.logit_scale, batch.positives())
        if batch.pairs:
            loss = loss + config.twin_weight * twin_loss(image_embeddings, text_embeddings, net.logit_scale,
                                                         batch.pairs)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            net.logit_scale.clamp_(0.0, math.log(100.0))  # CLIP's cap on the temperature
        if progress is not None:
            progress(step, {"loss": loss.item(), "scale": net.logit_scale.exp().item()})
    return net.eval().requires_grad_(False)


# -- measuring -------------------------------------------------------------------------------------

def held_out_faces(n: int, seed: int = HELD_OUT_SEED) -> FaceParams:
    """`n` held-out faces (half aligned, half unaligned) from seeds training never uses."""
    if seed < HELD_OUT_SEED:
        raise ValueError(f"held-out seeds start at {HELD_OUT_SEED}; got {seed}")
    return _faces(seed, n)


def _distractors(texts: Sequence[str], count: int, rng: np.random.Generator) -> np.ndarray:
    """int [N, count]: for each item, `count` other items whose caption differs from its own."""
    texts = np.asarray(texts)
    chosen = np.empty((len(texts), count), dtype=np.int64)
    for i, text in enumerate(texts):
        others = np.flatnonzero(texts != text)
        if len(others) < count:
            raise ValueError(f"only {len(others)} held-out faces have another caption than face {i}; "
                             f"need {count}: use more faces")
        chosen[i] = rng.choice(others, size=count, replace=False)
    return chosen


@torch.no_grad()
def embed_images(net: ToyClipNet, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """`net.encode_image` in batches, on the net's device; [N, D] on the CPU."""
    device = net.word_embedding.weight.device
    return torch.cat([net.encode_image(images[i:i + batch_size].to(device)).cpu()
                      for i in range(0, images.shape[0], batch_size)])


@torch.no_grad()
def measure(net: ToyClipNet, params: FaceParams, images: torch.Tensor, seed: int = 0) -> dict[str, object]:
    """Held-out figures: retrieval among `CANDIDATES` both ways, and zero-shot reading of each
    attribute with one-attribute prompts; `passed` says whether the gate holds."""
    bins = captions.face_bins(params)
    texts = [captions.full_caption(row) for row in bins]
    image_embeddings = embed_images(net, images)  # [N, D]
    text_embeddings = net.encode_text(texts).cpu()  # [N, D]
    similarity = (image_embeddings @ text_embeddings.T).numpy()  # [N images, N captions]
    others = _distractors(texts, CANDIDATES - 1, np.random.default_rng(seed))  # [N, 9]
    rows = np.arange(len(texts))[:, None]
    # Image -> text: the image's own caption against the captions of 9 other faces; text -> image
    # the other way round. A tie counts as a miss.
    image_to_text = similarity[rows[:, 0], rows[:, 0]] > similarity[rows, others].max(axis=1)
    text_to_image = similarity[rows[:, 0], rows[:, 0]] > similarity[others, rows].max(axis=1)
    zero_shot = {}
    for column, concept in enumerate(captions.CONCEPTS):
        prompts = [captions.caption({concept.attribute: b}) for b in range(len(concept.bins))]
        read = (image_embeddings @ net.encode_text(prompts).cpu().T).argmax(dim=1).numpy()
        zero_shot[concept.attribute] = float(np.mean(read == bins[:, column]))
    half = len(texts) // 2  # the first half aligned, the second unaligned
    figures: dict[str, object] = {
        "n": len(texts), "candidates": CANDIDATES,
        "image_to_text_top1": float(image_to_text.mean()),
        "image_to_text_top1_aligned": float(image_to_text[:half].mean()),
        "image_to_text_top1_unaligned": float(image_to_text[half:].mean()),
        "text_to_image_top1": float(text_to_image.mean()),
        "zero_shot_accuracy": zero_shot,
        "temperature": float(1.0 / net.logit_scale.exp()),
    }
    figures["passed"] = {"image_to_text_top1": figures["image_to_text_top1"] >= GATES["image_to_text_top1"]}
    return figures


def measure_held_out(net: ToyClipNet, n: int = 1000, seed: int = HELD_OUT_SEED,
                     degrade: bool = False) -> dict[str, object]:
    """`measure` on `n` fresh held-out renders (optionally augmented, as a robustness check)."""
    params = held_out_faces(n, seed)
    images = render(params).images
    if degrade:
        images = augment(images, torch.Generator().manual_seed(seed))
    return measure(net, params, images, seed=seed)


def train_and_save(out_dir: str | Path, config: TrainingConfig, n_held_out: int = 1000,
                   log: Callable[[str], None] = print) -> tuple[Path, dict[str, object]]:
    """Train, measure on held-out renders (clean and degraded), and write `toyclip.pt` to `out_dir`."""
    start = time.monotonic()
    net = train_toyclip(config, step_logger(config.steps, start, log))
    seconds = round(time.monotonic() - start, 1)
    figures = measure_held_out(net, n_held_out)
    figures["degraded"] = {k: v for k, v in measure_held_out(net, n_held_out, HELD_OUT_SEED + 1, degrade=True).items()
                           if k != "passed"}
    training = {**dataclasses.asdict(config), "channels": list(config.channels), "seconds": seconds,
                "held_out": figures}
    path = Path(out_dir) / "toyclip.pt"
    save_toyclip(net, path, training=plain_values(training))
    log(f"trained in {seconds:.0f} s; wrote {path}")
    return path, figures
