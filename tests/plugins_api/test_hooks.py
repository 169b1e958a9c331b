"""One test per hook (test_hook_<name>), and meta-tests that keep it so (as datasette does)."""
from __future__ import annotations

import inspect
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from sg3probe import hookspecs
from sg3probe.analyzer import Analyzer, Needs
from sg3probe.hookspecs import ModelEntry, hookimpl
from sg3probe.scorer import Attribute, Scorer

HOOK_NAMES = sorted(name for name, obj in vars(hookspecs).items()
                    if callable(obj) and hasattr(obj, "sg3probe_spec"))


def test_every_hookspec_has_a_docstring():
    assert HOOK_NAMES, "no hookspecs found: the marker attribute name changed?"
    for name in HOOK_NAMES:
        doc = inspect.getdoc(getattr(hookspecs, name))
        assert doc and len(doc) > 40, f"hookspec {name} has no real docstring"


@pytest.mark.parametrize("name", HOOK_NAMES)
def test_every_hookspec_has_a_test(name):
    assert callable(globals().get(f"test_hook_{name}")), f"write test_hook_{name} in {__file__}"


class _Flip(Scorer):
    name = "flip"
    description = "Mean brightness."
    attributes = (Attribute("bright", "continuous", value_range=(-1.0, 1.0)),)

    def score(self, images):
        return {"bright": images.mean(dim=(1, 2, 3)).numpy()}


class _Noop(Analyzer):
    name = "noop"
    needs = Needs(spaces={"z"})


def test_hook_register_analyzers(manager):
    class Plugin:
        @hookimpl
        def register_analyzers(self, register):
            register(_Noop)

    manager.register(Plugin(), name="plugin")
    assert manager.get_analyzers() == {"noop": _Noop}
    assert manager.get_analyzer("noop") is _Noop


def test_hook_register_scorers(manager):
    class Plugin:
        @hookimpl
        def register_scorers(self, register):
            register(_Flip)

    manager.register(Plugin(), name="plugin")
    scorer = manager.get_scorer("flip")(device="cpu")
    torch = pytest.importorskip("torch")
    scores = scorer.score(torch.ones(2, 3, 4, 4))
    np.testing.assert_allclose(scores["bright"], [1.0, 1.0])


def test_hook_register_models(manager, tmp_path: Path):
    entry = ModelEntry(name="toyfaces", kind="stylegan3-t", resolution=64,
                       path=tmp_path / "toyfaces.pt", sha256="0" * 64)

    class Plugin:
        @hookimpl
        def register_models(self, register):
            register(entry)

    manager.register(Plugin(), name="plugin")
    assert manager.get_model("toyfaces") is entry


def test_a_zoo_entry_is_loaded_only_with_its_sha256_and_through_its_loader(t64, monkeypatch):
    import sg3probe.zoo
    from sg3probe.checkpoints import file_sha256, load_model
    from sg3probe.errors import CheckpointError

    entries = {}
    monkeypatch.setattr(sg3probe.zoo, "find_model_entry", entries.get)
    real = file_sha256(t64.pickle_path)
    entries["right"] = ModelEntry(name="right", kind="stylegan3-t", resolution=64, path=t64.pickle_path,
                                  sha256=real.upper())
    assert load_model("right").sha256 == real
    entries["wrong"] = ModelEntry(name="wrong", kind="stylegan3-t", resolution=64, path=t64.pickle_path,
                                  sha256="0" * 64)
    with pytest.raises(CheckpointError, match=f"zoo model 'wrong': .* has sha256 {real[:12]}.*entry says 000000"):
        load_model("wrong")
    calls = []

    def loader(entry, device):
        calls.append((entry.name, str(device)))
        return load_model(t64.pickle_path).generator
    entries["custom"] = ModelEntry(name="custom", kind="stylegan3-t", resolution=64, path=t64.pickle_path,
                                   sha256=real, loader=loader)
    loaded = load_model("custom", "cpu")
    assert calls == [("custom", "cpu")] and loaded.format == "zoo loader" and loaded.sha256 == real
    entries["custom-wrong"] = ModelEntry(name="custom-wrong", kind="stylegan3-t", resolution=64,
                                         path=t64.pickle_path, sha256="1" * 64, loader=loader)
    with pytest.raises(CheckpointError, match="entry says 111111"):
        load_model("custom-wrong")
    assert len(calls) == 1  # the hash is checked before the loader runs


def test_hook_register_commands(manager):
    class Plugin:
        @hookimpl
        def register_commands(self, cli):
            @cli.command()
            def hello():
                click.echo("hello from a plugin")

    class Broken:
        @hookimpl
        def register_commands(self, cli):
            raise RuntimeError("no")

    manager.register(Plugin(), name="plugin")
    manager.register(Broken(), name="broken")
    group = click.Group("sg3probe")
    manager.add_commands(group)

    result = CliRunner().invoke(group, ["hello"])
    assert result.exit_code == 0 and result.output == "hello from a plugin\n"
    assert manager.errors["broken"] == ["plugin 'broken' raised in register_commands: RuntimeError: no"]


def test_invalid_registration_rejects_the_whole_plugin(manager):
    class NoName(Analyzer):
        pass

    class Plugin:
        @hookimpl
        def register_analyzers(self, register):
            register(_Noop)
            register(NoName)

    manager.register(Plugin(), name="plugin")
    assert manager.get_analyzers() == {}
    assert "invalid analyzer" in manager.errors["plugin"][0]


def test_model_registration_must_be_a_model_entry(manager):
    class Plugin:
        @hookimpl
        def register_models(self, register):
            register({"name": "x"})

    manager.register(Plugin(), name="plugin")
    assert manager.get_models() == {}
    assert "ModelEntry" in manager.errors["plugin"][0]


def test_hookimpl_with_arguments_outside_the_spec_is_rejected(manager):
    class Plugin:
        @hookimpl
        def register_analyzers(self, register, extra):
            pass

    assert manager.register(Plugin(), name="plugin") is None
    assert "cannot be registered" in manager.errors["plugin"][0]
