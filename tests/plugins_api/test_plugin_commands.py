"""`sg3probe plugins | analyzers | scorers` against a plugins dir with a good and a broken plugin."""
from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from plugin_sources import GOOD_PLUGIN
from sg3probe.cli.plugin_commands import COMMANDS


@pytest.fixture
def cli():
    # Entry points of this machine are loaded too; the assertions only look at our plugins.
    return click.Group("sg3probe", commands={command.name: command for command in COMMANDS})


@pytest.fixture
def plugins_dir(write_plugin):
    write_plugin("good", GOOD_PLUGIN)
    write_plugin("scorers", '''
        import numpy as np
        from sg3probe.hookspecs import hookimpl
        from sg3probe.scorer import Attribute, Scorer

        class Tone(Scorer):
            name = "tone"
            description = "Skin tone.\\nMore text."
            attributes = (Attribute("tone", "continuous"),)

            def __init__(self, device="cpu", checkpoint="tone.pt", *, scale=1.0):
                super().__init__(device)

            def score(self, images):
                return {"tone": np.zeros(len(images))}

            def pose(self, images):
                return {}

        @hookimpl
        def register_scorers(register):
            register(Tone)
    ''')
    return write_plugin("broken", "raise ImportError('needs torchvision')\n")


def test_plugins_lists_versions_hooks_and_broken(cli, plugins_dir):
    result = CliRunner().invoke(cli, ["plugins", "--plugins-dir", str(plugins_dir)])
    assert result.exit_code == 0, result.output
    assert "good  -  hooks: register_analyzers" in result.output
    assert "broken  -  BROKEN" in result.output
    assert "plugin 'broken' failed to load" in result.output and "needs torchvision" in result.output


def test_plugins_json(cli, plugins_dir):
    result = CliRunner().invoke(cli, ["plugins", "--json", "--plugins-dir", str(plugins_dir)])
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert rows["good"]["ok"] and rows["good"]["hooks"] == ["register_analyzers"]
    assert not rows["broken"]["ok"]


def test_analyzers_and_scorers_list_with_broken_as_warning(cli, plugins_dir):
    runner = CliRunner()
    analyzers = runner.invoke(cli, ["analyzers", "--plugins-dir", str(plugins_dir)])
    assert analyzers.exit_code == 0
    assert "spread  Per-dimension spread of W." in analyzers.stdout
    assert "spaces: w; scores: False" in analyzers.stdout
    assert "warning: plugin 'broken'" in analyzers.stderr

    assert "Settings and their defaults: sg3probe analyzers NAME" in analyzers.stdout

    scorers = runner.invoke(cli, ["scorers", "--plugins-dir", str(plugins_dir)])
    assert "tone  Skin tone." in scorers.stdout and "More text" not in scorers.stdout
    assert "attributes: tone (continuous)" in scorers.stdout
    assert "capabilities: pose" in scorers.stdout
    assert "options: checkpoint='tone.pt', scale=1.0" in scorers.stdout


def test_analyzers_name_prints_its_settings_as_a_config_file(cli, plugins_dir):
    """`sg3probe analyzers NAME` is TOML that --config reads: the run's defaults, with comments."""
    from sg3probe.config import from_dict, tomllib
    from sg3probe.pipeline import run_schema

    result = CliRunner().invoke(cli, ["analyzers", "spread", "--plugins-dir", str(plugins_dir)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# spread: Per-dimension spread of W.")
    assert "top_k = 3  # dimensions in the summary" in result.stdout  # the plugin's own comment
    assert "# truncation_cutoff = (none)" in result.stdout  # a None default has no TOML form
    values = tomllib.loads(result.stdout)
    assert values["spread"] == {"top_k": 3} and values["sampling"]["seeds"] == "0-1999"
    from sg3probe.plugin_manager import build_plugin_manager
    schema = run_schema(build_plugin_manager(plugins_dir).get_analyzer("spread"))
    assert from_dict(schema, values) == schema()


def test_analyzers_unknown_name_is_one_line(plugins_dir):
    from sg3probe.cli.main import cli as sg3probe_cli

    result = CliRunner().invoke(sg3probe_cli, ["analyzers", "nope", "--plugins-dir", str(plugins_dir)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: unknown analyzer 'nope': the available ones are")
    assert "spread" in result.stderr and len(result.stderr.splitlines()) == 1


def test_a_plugin_without_description_is_listed_by_its_own_docstring():
    from sg3probe.cli.plugin_commands import _description
    from sg3probe.scorer import Scorer

    class Documented(Scorer):
        """Reads the weather.

        More text."""

    class Bare(Scorer):
        pass

    assert _description(Documented).splitlines()[0] == "Reads the weather."
    assert _description(Bare) == ""  # not the base class's docstring
