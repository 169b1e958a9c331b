"""Discovery: a plugins dir, entry points of installed distributions, broken plugins."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

from sg3probe.analyzer import AnalysisContext, InMemorySampleSet
from sg3probe.errors import ConfigError, PluginError
from sg3probe.plugin_manager import build_plugin_manager

from plugin_sources import GOOD_PLUGIN


def test_plugins_dir_loads_good_plugin_and_records_broken_one(write_plugin):
    write_plugin("good", GOOD_PLUGIN)
    folder = write_plugin("broken", "import no_such_module_for_sg3probe_tests\n")
    manager = build_plugin_manager(folder, entry_points=False)

    assert list(manager.get_analyzers()) == ["spread"]
    (error,) = manager.errors["broken"]
    assert "\n" not in error
    assert "'broken'" in error and "no_such_module_for_sg3probe_tests" in error
    infos = {info.name: info for info in manager.plugin_info()}
    assert infos["good"].ok and infos["good"].hooks == ("register_analyzers",)
    assert not infos["broken"].ok


def test_healthy_analyzer_still_runs_beside_a_broken_plugin(write_plugin, tmp_path):
    write_plugin("good", GOOD_PLUGIN)
    folder = write_plugin("syntax", "def broken(:\n")
    manager = build_plugin_manager(folder, entry_points=False)

    analyzer = manager.get_analyzer("spread")()
    samples = {"aligned": InMemorySampleSet({"w": np.arange(12.0).reshape(4, 3)})}
    result = analyzer.analyze(samples, AnalysisContext({}, tmp_path), analyzer.make_config({}))
    assert result.metrics["max_spread"] == pytest.approx(np.arange(12.0).reshape(4, 3).std(0).max())
    assert "SyntaxError" in manager.errors["syntax"][0]


def test_hook_that_raises_is_recorded_in_one_line_and_others_register(manager, write_plugin):
    write_plugin("good", GOOD_PLUGIN)
    folder = write_plugin("raises", '''
        from sg3probe.hookspecs import hookimpl

        @hookimpl
        def register_analyzers(register):
            raise RuntimeError("weights missing\\nsecond line")
    ''')
    manager.load_plugins_dir(folder)

    assert list(manager.get_analyzers()) == ["spread"]
    (error,) = manager.errors["raises"]
    assert error == ("plugin 'raises' raised in register_analyzers: "
                     "RuntimeError: weights missing second line")
    # Asking again neither calls the hook twice into the record nor loses the error.
    manager.get_analyzers()
    assert len(manager.errors["raises"]) == 1


def test_unknown_name_error_lists_available_and_broken(write_plugin):
    write_plugin("good", GOOD_PLUGIN)
    folder = write_plugin("broken", "raise ValueError('bad')\n")
    manager = build_plugin_manager(folder, entry_points=False)

    with pytest.raises(ConfigError) as caught:
        manager.get_analyzer("nope")
    message = str(caught.value)
    assert "'nope'" in message and "spread" in message and "'broken'" in message


def test_plugin_implementing_a_misspelt_hook_is_broken(manager, write_plugin):
    folder = write_plugin("typo", '''
        from sg3probe.hookspecs import hookimpl

        @hookimpl
        def register_analyser(register):
            pass
    ''')
    manager.load_plugins_dir(folder)

    assert not manager.has_plugin("typo")
    assert "register_analyser" in manager.errors["typo"][0]
    assert "register_analyzers" in manager.errors["typo"][0]


def test_missing_plugins_dir_is_a_config_error(manager, tmp_path):
    with pytest.raises(ConfigError, match="not a folder"):
        manager.load_plugins_dir(tmp_path / "absent")


@pytest.fixture
def installed_distribution(tmp_path, monkeypatch):
    """A fake installed distribution with two entry points in the group sg3probe."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sg3probe_fake_plugin.py").write_text(GOOD_PLUGIN, encoding="utf-8")
    dist_info = site / "sg3probe_fake-1.2.3.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: sg3probe-fake\nVersion: 1.2.3\n", encoding="utf-8")
    (dist_info / "entry_points.txt").write_text(
        "[sg3probe]\nfake = sg3probe_fake_plugin\nfake_broken = sg3probe_fake_missing\n",
        encoding="utf-8")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    yield
    sys.modules.pop("sg3probe_fake_plugin", None)


def test_entry_points_give_version_and_record_broken(installed_distribution, manager):
    manager.load_entry_points()

    infos = {info.name: info for info in manager.plugin_info()}
    assert infos["fake"].version == "1.2.3"
    assert infos["fake"].distribution == "sg3probe-fake"
    assert infos["fake"].ok
    assert "sg3probe_fake_missing" in infos["fake_broken"].errors[0]
    assert "spread" in manager.get_analyzers()


def test_duplicate_names_are_an_error_naming_both_plugins(manager, write_plugin):
    write_plugin("first", GOOD_PLUGIN)
    folder = write_plugin("second", GOOD_PLUGIN)
    manager.load_plugins_dir(folder)

    assert "spread" not in manager.get_analyzers()
    with pytest.raises(PluginError) as caught:
        manager.get_analyzer("spread")
    assert "'first'" in str(caught.value) and "'second'" in str(caught.value)
    for plugin in ("first", "second"):
        (error,) = manager.errors[plugin]
        assert "'spread'" in error and "'first'" in error and "'second'" in error


def test_unregister_forgets_registrations_and_clash(manager, write_plugin):
    write_plugin("first", GOOD_PLUGIN)
    folder = write_plugin("second", GOOD_PLUGIN)
    manager.load_plugins_dir(folder)
    assert "spread" not in manager.get_analyzers()

    manager.unregister(name="second")

    assert "spread" in manager.get_analyzers()
    assert manager.errors == {}


def test_loading_the_same_plugins_dir_twice_keeps_one_copy(manager, write_plugin):
    folder = write_plugin("good", GOOD_PLUGIN)
    manager.load_plugins_dir(folder)
    manager.load_plugins_dir(folder)
    assert list(manager.get_analyzers()) == ["spread"] and manager.errors == {}


def test_the_plugins_dir_variable_reaches_every_command(tmp_path, t64):
    import os
    import subprocess
    import sys

    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "mine.py").write_text(f'''
import click
import sg3probe
from pathlib import Path
from sg3probe.hookspecs import ModelEntry

@sg3probe.hookimpl
def register_models(register):
    register(ModelEntry(name="my-t64", kind="stylegan3-t", resolution=64, path=Path({str(t64.pickle_path)!r}),
                        sha256=""))

@sg3probe.hookimpl
def register_commands(cli):
    @cli.command()
    def hello():
        click.echo("hello from mine")
''')
    env = {**os.environ, "SG3PROBE_PLUGINS_DIR": str(folder)}

    def sg3probe_cli(*args):
        return subprocess.run([sys.executable, "-m", "sg3probe", *args], env=env, capture_output=True, text=True)
    assert "hello from mine" in sg3probe_cli("hello").stdout
    assert "my-t64" in sg3probe_cli("models").stdout
    info = sg3probe_cli("info", "my-t64")
    assert info.returncode == 0 and "num_ws" in info.stdout, info.stderr
    env["SG3PROBE_PLUGINS_DIR"] = str(tmp_path / "absent")
    listing = sg3probe_cli("plugins")
    assert "SG3PROBE_PLUGINS_DIR" in listing.stdout + listing.stderr and "is not a folder" in listing.stdout + listing.stderr
