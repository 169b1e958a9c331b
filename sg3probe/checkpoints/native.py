"""sg3probe's own checkpoint: one torch.save file of plain data, read with weights_only=True.

Layout: {"format": "sg3probe.generator", "format_version": 1, "config": GeneratorConfig as a
dict, "state_dict": {name: tensor}, "metadata": {free JSON-able dict}}. Nothing in it is code.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from sg3probe.errors import CheckpointError

FORMAT = "sg3probe.generator"
FORMAT_VERSION = 1


def save_generator(generator, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write `generator` (config + tensors + metadata) atomically to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": generator.config.to_dict(),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()},
        "metadata": dict(metadata or {}),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_native(path: str | Path):
    """Read a checkpoint written by `save_generator`; returns (Generator, metadata)."""
    from sg3probe.models.architecture import GeneratorConfig
    from sg3probe.models.generator import Generator

    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for damaged zips; all mean the same to a user
        raise CheckpointError(f"{path} is a zip file but not a readable sg3probe checkpoint (torch could not load "
                              f"it: {type(error).__name__}); give an NVIDIA .pkl or a .pt written by sg3probe "
                              "(`sg3probe convert`, `sg3probe toy train`)") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a torch file but not an sg3probe generator checkpoint; "
                              "convert NVIDIA pickles with `sg3probe convert`")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer sg3probe (format {payload['format_version']}); upgrade sg3probe")
    generator = Generator(GeneratorConfig(**payload["config"]))
    try:
        generator.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{path}: tensors do not match its config ({str(error).splitlines()[0]})") from None
    return generator.eval().requires_grad_(False), dict(payload.get("metadata") or {})
