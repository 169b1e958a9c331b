"""The model zoo: named generators registered by plugins (the toy world registers its own)."""
from __future__ import annotations

from pathlib import Path


def _entries() -> dict:
    from sg3probe.plugin_manager import get_plugin_manager
    return get_plugin_manager().get_models()


def model_names() -> list[str]:
    return sorted(_entries())


def find_model_file(name: str) -> Path | None:
    """The checkpoint file of a registered zoo model, or None if no plugin registers `name`."""
    entry = _entries().get(name)
    return None if entry is None else Path(entry.path)
