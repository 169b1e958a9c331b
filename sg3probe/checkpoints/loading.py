"""`load_generator(source)`: one entry point for every kind of model source."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sg3probe.checkpoints.native import load_native
from sg3probe.checkpoints.nvidia_pickle import generator_from_snapshot, read_snapshot
from sg3probe.errors import CheckpointError, ConfigError, ModelNotFoundError


@dataclass
class LoadedModel:
    """A generator with where it came from: what every run records as provenance."""

    generator: Any
    source: str
    path: Path
    sha256: str
    format: str  # 'nvidia-pickle' | 'sg3probe'
    metadata: dict = field(default_factory=dict)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _zoo_path(name: str) -> Path | None:
    from sg3probe.zoo import find_model_file
    return find_model_file(name)


def _available(kind: str) -> bool:
    """Whether this torch build and machine have devices of `kind` (cpu, cuda, mps; other kinds: not known here)."""
    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "mps":
        return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    return True


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The requested device, or the best available one (cuda, then mps, then cpu)."""
    if device is None:
        return torch.device(next((kind for kind in ("cuda", "mps") if _available(kind)), "cpu"))
    try:
        chosen = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"device {str(device)!r} is not a torch device: give cpu, cuda, cuda:N or mps") from None
    if not _available(chosen.type):
        raise ConfigError(f"device {str(device)!r} is not available in this torch build or machine; "
                          "give cpu (or leave the device out to take the best available one)")
    return chosen


def load_model(source: str | Path, device: str | torch.device | None = None) -> LoadedModel:
    """Load a generator from a path (NVIDIA .pkl or sg3probe checkpoint) or a model-zoo name."""
    path = Path(source).expanduser()
    if not path.exists():
        zoo_path = _zoo_path(str(source))
        if zoo_path is None:
            from sg3probe.zoo import model_names
            raise ModelNotFoundError(f"model {source!r} is neither a file nor a zoo name; "
                                     f"zoo: {', '.join(model_names()) or '(empty)'}; see `sg3probe models`")
        path = zoo_path
        if not path.is_file():
            raise ModelNotFoundError(f"zoo model {str(source)!r} is registered, but its weights file {path} "
                                     "is missing; reinstall the plugin that provides it or retrain it")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; give the checkpoint file inside it")
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head.startswith(b"PK"):
        generator, metadata = load_native(path)
        fmt = "sg3probe"
    else:
        generator = generator_from_snapshot(read_snapshot(path), path)
        metadata, fmt = {}, "nvidia-pickle"
    generator = generator.to(resolve_device(device))
    return LoadedModel(generator, str(source), path, file_sha256(path), fmt, metadata)


def load_generator(source: str | Path, device: str | torch.device | None = None):
    """Load a StyleGAN3 generator (eval mode, no gradients) from a .pkl, native file or zoo name."""
    return load_model(source, device).generator
