"""Config precedence, --set parsing, unknown keys and the TOML written back."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sg3probe.config import (FieldComments, defaults_toml, dumps_toml, field_comments, from_dict, load_toml,
                             merge, parse_set, resolve_config, tomllib, with_sections, write_config)
from sg3probe.errors import ConfigError


@dataclass
class Sampling:
    truncation_psi: float = 1.0
    spaces: list[str] = field(default_factory=lambda: ["w"])


@dataclass
class Core:
    model: str = "toyfaces"
    seeds: str = "0-999"
    batch_size: int = 16
    device: str | None = None
    out: Path | None = None
    sampling: Sampling = field(default_factory=Sampling)


@dataclass
class Disentanglement:
    n_train: int = 1000
    percentile: float = 0.9


SCHEMA = with_sections(Core, {"disentanglement": Disentanglement})


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_each_layer_overrides_the_one_below(tmp_path):
    _write(tmp_path / "pyproject.toml", """
[project]
name = "x"
[tool.sg3probe]
model = "from-pyproject"
seeds = "0-9"
batch_size = 4
[tool.sg3probe.disentanglement]
n_train = 10
""")
    run_toml = _write(tmp_path / "run.toml", 'seeds = "0-99"\nbatch_size = 8\n')
    resolved = resolve_config(SCHEMA, config_file=run_toml, sets=["batch_size=32"],
                              directory=tmp_path)
    config = resolved.config
    assert config.model == "from-pyproject"  # pyproject over default
    assert config.seeds == "0-99"  # --config over pyproject
    assert config.batch_size == 32  # --set over --config
    assert config.disentanglement.n_train == 10 and config.disentanglement.percentile == 0.9
    assert config.sampling.truncation_psi == 1.0  # default
    assert [layer.source for layer in resolved.layers] == [
        "pyproject.toml [tool.sg3probe]", str(run_toml), "--set batch_size=32"]


def test_without_pyproject_the_defaults_hold(tmp_path):
    assert resolve_config(SCHEMA, directory=tmp_path).config == SCHEMA()


def test_set_with_dotted_keys_and_toml_literals(tmp_path):
    config = resolve_config(SCHEMA, directory=tmp_path, sets=[
        "sampling.truncation_psi=0.7", "sampling.spaces=['w', 's']", "model=my model.pkl",
        "out=runs/a", "disentanglement.n_train=5"]).config
    assert config.sampling == Sampling(0.7, ["w", "s"])
    assert config.model == "my model.pkl"  # not TOML: taken as the string
    assert config.out == Path("runs/a")
    assert config.disentanglement.n_train == 5


@pytest.mark.parametrize("assignment, expected", [
    ("a=1", {"a": 1}), ("a=1.5", {"a": 1.5}), ("a=true", {"a": True}), ('a="1"', {"a": "1"}),
    ("a.b.c=x", {"a": {"b": {"c": "x"}}}), ("a = [1, 2]", {"a": [1, 2]}), ("a=", {"a": ""}),
])
def test_parse_set(assignment, expected):
    assert parse_set(assignment) == expected


@pytest.mark.parametrize("assignment", ["novalue", "=3", "a..b=1"])
def test_parse_set_rejects_malformed(assignment):
    with pytest.raises(ConfigError, match="--set"):
        parse_set(assignment)


def test_unknown_key_anywhere_names_it_and_the_accepted_ones(tmp_path):
    with pytest.raises(ConfigError) as caught:
        resolve_config(SCHEMA, directory=tmp_path, sets=["sampling.truncaton_psi=0.5"])
    message = str(caught.value)
    assert "'sampling.truncaton_psi'" in message
    assert "accepted keys in [sampling] are: spaces, truncation_psi" in message
    assert "did you mean 'truncation_psi'" in message

    _write(tmp_path / "pyproject.toml", "[tool.sg3probe]\nbatch = 3\n")
    with pytest.raises(ConfigError) as caught:
        resolve_config(SCHEMA, directory=tmp_path)
    assert "unknown config key 'batch'" in str(caught.value)
    assert "batch_size, device, disentanglement, model, out, sampling, seeds" in str(caught.value)


def test_wrong_type_and_table_where_value_expected(tmp_path):
    with pytest.raises(ConfigError, match="'batch_size' must be int, got float 1.5"):
        resolve_config(SCHEMA, directory=tmp_path, sets=["batch_size=1.5"])
    with pytest.raises(ConfigError, match=r"config \[sampling\] must be a table, got int 3"):
        resolve_config(SCHEMA, directory=tmp_path, sets=["sampling=3"])


def test_bad_toml_and_missing_file_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_toml(_write(tmp_path / "bad.toml", "a = [\n"))
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_config(SCHEMA, config_file=tmp_path / "none.toml", directory=tmp_path)


def test_merge_is_deep_and_does_not_mutate():
    base = {"a": {"b": 1, "c": 2}, "d": 1}
    assert merge(base, {"a": {"b": 3}, "d": {"e": 1}}) == {"a": {"b": 3, "c": 2}, "d": {"e": 1}}
    assert base == {"a": {"b": 1, "c": 2}, "d": 1}


def test_written_config_reproduces_the_run(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    _write(project / "pyproject.toml", '[tool.sg3probe]\nmodel = "from-pyproject"\n')
    first = resolve_config(SCHEMA, directory=project,
                           sets=["sampling.spaces=['w','s']", "out=x/y", "disentanglement.n_train=7"])
    written = write_config(tmp_path / "config.toml", first.config)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    again = resolve_config(SCHEMA, config_file=written, directory=elsewhere)
    assert again.config == first.config


def test_dumps_toml_round_trips_awkward_values():
    values = {
        "plain": "text", "quote": 'say "hi" \\ there', "lines": "a\nb\tc\x7f\x01", "unicode": "é✓",
        "int": -3, "float": 0.1, "big": 1e300, "inf": math.inf, "flag": False,
        "list": [1, 2.5, "x", [True]], "inline": [{"a": 1}],
        "odd key": 1, "table": {"x": 1, "sub": {"y": "z"}}, "only_tables": {"t": {"u": 1}},
        "empty": {},
    }
    assert tomllib.loads(dumps_toml(values)) == values


def test_dumps_toml_rejects_what_toml_cannot_hold():
    with pytest.raises(TypeError, match="'a.b'"):
        dumps_toml({"a": {"b": None}})


def test_from_dict_tuple_and_optional():
    @dataclass
    class Box:
        size: tuple[int, int] = (1, 1)
        name: str | None = None

    assert from_dict(Box, {"size": [2, 3], "name": "b"}) == Box((2, 3), "b")
    with pytest.raises(ConfigError, match="must have 2 items"):
        from_dict(Box, {"size": [1, 2, 3]})
    with pytest.raises(ConfigError) as caught:
        from_dict(Box, {"name": 3})
    assert "'name' must be str | None, got int 3" in str(caught.value)


@dataclass
class Commented:
    """A schema whose comments `defaults_toml` must carry over."""

    name: str = "toy"  # the model
    # Two lines about the strength,
    # which the listing keeps above it.
    strength: float = 2.5
    cutoff: int | None = None  # none: every layer
    regions: dict[str, str] = field(default_factory=lambda: {"smiling": "mouth"})
    sampling: Sampling = field(default_factory=Sampling)


def test_field_comments_trailing_and_above():
    comments = field_comments(Commented)
    assert comments["name"].trailing == "# the model" and comments["name"].above == ()
    assert comments["strength"].above == ("# Two lines about the strength,", "# which the listing keeps above it.")
    assert comments["strength"].trailing == ""
    assert comments["regions"] == FieldComments() and comments["cutoff"].trailing == "# none: every layer"


def test_defaults_toml_reads_back_as_the_defaults():
    text = defaults_toml(Commented)
    assert text.splitlines()[:5] == [
        'name = "toy"  # the model',
        "# Two lines about the strength,",
        "# which the listing keeps above it.",
        "strength = 2.5",
        "# cutoff = (none)  # none: every layer",
    ]
    assert 'regions = {smiling = "mouth"}' in text and "[sampling]" in text
    assert from_dict(Commented, tomllib.loads(text)) == Commented()
