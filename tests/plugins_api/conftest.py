"""Fixtures for the plugin API tests: a fresh manager per test, plugins registered explicitly."""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from sg3probe.plugin_manager import PluginManager


@pytest.fixture
def manager() -> PluginManager:
    """A manager with no plugins: nothing installed on this machine leaks into a test."""
    return PluginManager()


@pytest.fixture
def write_plugin(tmp_path: Path):
    """Write a single-file plugin into tmp_path/plugins and return the folder."""
    folder = tmp_path / "plugins"
    folder.mkdir()

    def write(name: str, source: str) -> Path:
        (folder / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        return folder

    yield write
    # Plugins loaded from files stay in sys.modules; drop them so no test sees another's.
    for module in [m for m in sys.modules if m.startswith("sg3probe_plugins_dir.")]:
        del sys.modules[module]
