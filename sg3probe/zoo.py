"""The model zoo: named generators registered by plugins (the toy world registers its own)."""
from __future__ import annotations


def _entries() -> dict:
    from sg3probe.plugin_manager import get_plugin_manager
    return get_plugin_manager().get_models()


def model_names() -> list[str]:
    return sorted(_entries())


def find_model_entry(name: str):
    """The registered zoo entry (sg3probe.hookspecs.ModelEntry) of `name`, or None if no plugin registers it."""
    return _entries().get(name)
