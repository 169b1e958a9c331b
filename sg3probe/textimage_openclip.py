"""The `openclip` text-image model: any open_clip architecture, with weights from a local file.

sg3probe never downloads weights: the architecture is built randomly initialised
(`open_clip.create_model(arch, pretrained=None)`) and the state dict is read from the file the
user names, with `torch.load(weights_only=True)` (or safetensors for `*.safetensors`). Both come
from the constructor's `checkpoint` and `arch` (a run's `[scorer_options]`, styleclip's
`text_model_options`, `sg3probe edit --text-model-option`) or else from environment variables:

    SG3PROBE_OPENCLIP_CHECKPOINT=/models/open_clip_vit_b_32.bin   # the weights file
    SG3PROBE_OPENCLIP_ARCH=ViT-B-32                               # an open_clip model name

The package is an optional extra: `pip install open_clip_torch` (or `pip install 'sg3probe[openclip]'`).
Checkpoints are the files open_clip's own training and releases write (`open_clip_pytorch_model.bin`,
`open_clip_model.safetensors`, or a training checkpoint with a `state_dict` entry); OpenAI's
TorchScript archives are not read. Architectures whose tokenizer comes from the Hugging Face hub
(SigLIP, ...) need that tokenizer in the local hub cache.

Preprocessing follows open_clip's: images in [-1, 1] are mapped to [0, 1], centre-cropped to a
square, resized to the model's size (bilinear, antialiased, so that gradients flow; open_clip's
PIL pipeline uses bicubic), and normalised with the model's mean and std.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import inspect
import logging
import os
from pathlib import Path
from typing import Any, Sequence

from sg3probe.errors import CheckpointError, ConfigError, PluginError
from sg3probe.textimage import TextImageScorer, square_resize

CHECKPOINT_ENV = "SG3PROBE_OPENCLIP_CHECKPOINT"
ARCH_ENV = "SG3PROBE_OPENCLIP_ARCH"
INSTALL_HINT = "pip install open_clip_torch (or pip install 'sg3probe[openclip]')"
# open_clip's defaults (OPENAI_DATASET_MEAN / STD), for models that do not say their own.
_OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def import_open_clip():
    """The open_clip module, or a one-line PluginError saying how to install it."""
    try:
        import open_clip
    except ImportError as error:
        raise PluginError(f"the openclip text-image model needs the open_clip package, which does "
                          f"not import here ({error}); install it: {INSTALL_HINT}") from None
    return open_clip


def resolve_options(checkpoint: str | Path | None, arch: str | None) -> tuple[Path, str]:
    """The checkpoint path and architecture from the arguments or the environment; one-line
    errors when either is missing (saying also when the open_clip package is missing)."""
    source = "the checkpoint option" if checkpoint else CHECKPOINT_ENV
    checkpoint = checkpoint or os.environ.get(CHECKPOINT_ENV) or None
    arch = arch or os.environ.get(ARCH_ENV) or None
    if checkpoint is None:
        raise ConfigError(f"the openclip text-image model needs a local checkpoint file and its architecture: "
                          f"give the options checkpoint=/path/to/open_clip_model.bin and arch=<e.g. ViT-B-32> "
                          f"(`sg3probe edit --text-model-option KEY=VALUE`; in a run, styleclip.text_model_options or "
                          f"scorer_options) "
                          f"or set {CHECKPOINT_ENV} and {ARCH_ENV}; sg3probe never downloads weights, so get the "
                          f"file once by hand{_package_note()}")
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise CheckpointError(f"open_clip checkpoint {path} (from {source}) does not exist; download the weights "
                              f"file of your model once by hand and give its path{_package_note()}")
    if arch is None:
        raise ConfigError(f"the openclip text-image model needs the architecture of {path.name}: give the option "
                          f"arch=<its open_clip model name, e.g. ViT-B-32> or set {ARCH_ENV} "
                          f"(`python -c \"import open_clip; print(open_clip.list_models())\"` lists them)"
                          f"{_package_note()}")
    return path, arch


def _package_note() -> str:
    """'' when open_clip can be imported; else what to install, to add to a message about the options."""
    if importlib.util.find_spec("open_clip") is not None:
        return ""
    return f"; open_clip is not installed either: {INSTALL_HINT}"


def read_state_dict(path: Path) -> dict[str, Any]:
    """The model state dict in an open_clip weights file (plain, `state_dict` entry, DDP prefixes)."""
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except ImportError:
        raise PluginError(f"reading {path.name} needs the safetensors package: pip install safetensors") from None
    except Exception as error:  # a corrupt or foreign file: say so in one line
        raise CheckpointError(f"{path} is not a readable open_clip weights file: {error}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{path} holds no state dict (found {type(state).__name__})")
    if all(key.startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}
    return state


@functools.lru_cache(maxsize=None)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    # Keyed by size and mtime so that a replaced file is hashed again.
    from sg3probe.checkpoints import file_sha256

    return file_sha256(path)


class OpenClipScorer(TextImageScorer):
    """An open_clip model (any architecture) loaded from a local weights file."""

    name = "openclip"
    description = (f"an open_clip text-image model from a local checkpoint file ({CHECKPOINT_ENV}, "
                   f"{ARCH_ENV}); needs {INSTALL_HINT}")

    def __init__(self, device: Any = "cpu", checkpoint: str | Path | None = None,
                 arch: str | None = None) -> None:
        super().__init__(device)
        import torch

        self.checkpoint, self.arch = resolve_options(checkpoint, arch)
        open_clip = import_open_clip()
        if self.arch.startswith("hf-hub:"):
            raise ConfigError(f"{ARCH_ENV}={self.arch} would download from the hub; give the open_clip "
                              f"model name of the architecture (e.g. ViT-B-32) and the weights as a file")
        options: dict[str, Any] = {"pretrained": None, "device": "cpu"}
        if "pretrained_text" in inspect.signature(open_clip.create_model).parameters:
            options["pretrained_text"] = False  # a hub text tower would otherwise fetch its base weights
        try:
            with _quiet_random_init_warning():
                model = open_clip.create_model(self.arch, **options)
        except RuntimeError:
            raise ConfigError(f"open_clip has no architecture {self.arch!r}; set {ARCH_ENV} to one of "
                              f"open_clip.list_models() (e.g. ViT-B-32, RN50)") from None
        state = read_state_dict(self.checkpoint)
        missing, unexpected = _key_mismatch(model.state_dict(), state)
        if missing or unexpected:
            raise CheckpointError(
                f"{self.checkpoint.name} does not fit open_clip architecture {self.arch!r}: "
                f"{len(missing)} missing keys (e.g. {', '.join(missing[:3]) or '-'}), {len(unexpected)} "
                f"unexpected (e.g. {', '.join(unexpected[:3]) or '-'}); check {ARCH_ENV}")
        try:
            model.load_state_dict(state)
        except RuntimeError as error:  # shapes that differ
            raise CheckpointError(f"{self.checkpoint.name} does not fit open_clip architecture "
                                  f"{self.arch!r}: {' '.join(str(error).split())[:300]}") from None
        self.model = model.to(device).eval().requires_grad_(False)
        self.tokenizer = open_clip.get_tokenizer(self.arch)
        config = dict(getattr(model.visual, "preprocess_cfg", {}) or {})
        size = config.get("size", getattr(model.visual, "image_size", 224))
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        mean = config.get("mean", getattr(model.visual, "image_mean", None)) or _OPENAI_MEAN
        std = config.get("std", getattr(model.visual, "image_std", None)) or _OPENAI_STD
        self._mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        with torch.no_grad():
            self.embedding_dim = int(self.encode_text(["a face"]).shape[1])

    def preprocess(self, images):
        """Images [B, 3, H, W] in [-1, 1] -> the model's normalised input; differentiable."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"openclip reads RGB images [B, 3, H, W]; got {list(images.shape)}")
        x = square_resize((images.to(self._mean.device, self._mean.dtype) + 1.0) * 0.5, self.image_size)
        return (x - self._mean) / self._std

    def encode_image(self, images):
        """Unit-norm embeddings [B, D] of images [B, 3, H, W] in [-1, 1]; differentiable."""
        from torch.nn import functional as F

        return F.normalize(self.model.encode_image(self.preprocess(images)).float(), dim=-1)

    def encode_text(self, texts: Sequence[str]):
        """Unit-norm embeddings [N, D] of texts."""
        from torch.nn import functional as F

        if isinstance(texts, str) or len(texts) == 0:
            raise ValueError("texts must be a non-empty list of strings")
        tokens = self.tokenizer(list(texts)).to(self._mean.device)
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1)

    def identity(self) -> str:
        stat = self.checkpoint.stat()
        return f"{self.name} {self.arch} sha256:{_sha256(str(self.checkpoint), stat.st_size, stat.st_mtime_ns)}"


class _NoRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No pretrained weights loaded")


@contextlib.contextmanager
def _quiet_random_init_warning():
    """Hide open_clip's warning that the model is randomly initialised: the weights follow."""
    root, quiet = logging.getLogger(), _NoRandomInitWarning()
    root.addFilter(quiet)
    try:
        yield
    finally:
        root.removeFilter(quiet)


def _key_mismatch(expected: dict, found: dict) -> tuple[list[str], list[str]]:
    """Sorted keys the model has and the file lacks, and keys the file has and the model lacks."""
    return sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
