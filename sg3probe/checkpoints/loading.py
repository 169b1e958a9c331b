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
    format: str  # 'nvidia-pickle' | 'sg3probe' | 'zoo loader'
    metadata: dict = field(default_factory=dict)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _zoo_entry(name: str):
    from sg3probe.zoo import find_model_entry
    return find_model_entry(name)


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
    """Load a generator from a path (NVIDIA .pkl or sg3probe checkpoint) or a model-zoo name.

    A zoo entry's file must have the entry's sha256 (when it gives one); its `loader`, when set,
    builds the generator instead of the checkpoint readers."""
    path = Path(source).expanduser()
    entry = None
    if not path.exists():
        entry = _zoo_entry(str(source))
        if entry is None:
            from sg3probe.zoo import model_names
            raise ModelNotFoundError(f"model {source!r} is neither a file nor a zoo name; "
                                     f"zoo: {', '.join(model_names()) or '(empty)'}; see `sg3probe models`")
        path = Path(entry.path).expanduser()
        if not path.is_file():
            raise ModelNotFoundError(f"zoo model {str(source)!r} is registered, but its weights file {path} "
                                     "is missing; reinstall the plugin that provides it or retrain it")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; give the checkpoint file inside it")
    sha256 = file_sha256(path)
    if entry is not None and entry.sha256 and entry.sha256.lower() != sha256:
        raise CheckpointError(f"zoo model {entry.name!r}: {path} has sha256 {sha256[:12]}..., but the entry says "
                              f"{entry.sha256[:12]}...; the file was changed or replaced: restore it, or fix the "
                              "sha256 of the plugin's ModelEntry")
    if entry is not None and entry.loader is not None:
        generator, metadata, fmt = entry.loader(entry, resolve_device(device)), {}, "zoo loader"
    else:
        with open(path, "rb") as handle:
            head = handle.read(4)
        if head.startswith(b"PK"):
            generator, metadata = load_native(path)
            fmt = "sg3probe"
        else:
            generator = generator_from_snapshot(read_snapshot(path), path)
            metadata, fmt = {}, "nvidia-pickle"
    generator = generator.to(resolve_device(device))
    return LoadedModel(generator, str(source), path, sha256, fmt, metadata)


def load_generator(source: str | Path, device: str | torch.device | None = None):
    """Load a StyleGAN3 generator (eval mode, no gradients) from a .pkl, native file or zoo name."""
    return load_model(source, device).generator
