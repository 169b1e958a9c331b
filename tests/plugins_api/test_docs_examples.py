"""The plugin examples of docs/plugins.md run as written: a plugin author copies them."""
from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from sg3probe.cli.main import cli

DOC = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def _snippet(heading: str) -> str:
    """The first python block after `## heading` in docs/plugins.md."""
    section = DOC.read_text(encoding="utf-8").split(f"## {heading}\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_analyzer_example_runs(tmp_path, t64):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "w_norms.py").write_text(_snippet("An analyzer"), encoding="utf-8")
    listing = CliRunner().invoke(cli, ["analyzers", "w-norms", "--plugins-dir", str(plugins)])
    assert listing.exit_code == 0 and "bins = 30  # histogram bins" in listing.output, listing.output
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", "w-norms", "--model", str(t64.pickle_path), "--seeds", "0-15",
                                      "--set", "w_norms.bins=4", "--plugins-dir", str(plugins), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "results" / "w-norms" / "metrics.json").read_text())["mean_norm"] > 0
    assert len((out / "results" / "w-norms" / "tables" / "histogram.csv").read_text().splitlines()) == 5


def test_the_zoo_model_example_registers(tmp_path, write_plugin):
    from sg3probe.plugin_manager import build_plugin_manager

    source = _snippet("A zoo model").replace('sha256="..."', 'sha256=""')
    folder = write_plugin("my_zoo", source)
    manager = build_plugin_manager(folder, entry_points=False)
    assert not manager.errors, manager.errors
    assert manager.get_model("my-ffhq").path == Path("/models/stylegan3-r-ffhq-1024x1024.pkl")
