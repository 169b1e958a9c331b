"""The Analyzer base class, Needs, typed config, the context and the in-memory SampleSet."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pytest

from sg3probe.analyzer import (AnalysisContext, Analyzer, InMemorySampleSet, Needs, SampleSet,
                               SilentProgress, check_analyzer_class)
from sg3probe.errors import ConfigError


class Directions(Analyzer):
    name = "directions"
    needs = Needs(spaces=["w", "s"], scores=["smiling"], models="both")

    @dataclass
    class Config:
        top_k: int = 5
        ratio: float = 0.5
        method: Literal["svd", "pca"] = "svd"
        layers: list[str] = field(default_factory=list)


def test_needs_accepts_lists_and_stores_immutable_values():
    needs = Directions.needs
    assert needs.spaces == frozenset({"w", "s"})
    assert needs.scores == ("smiling",)
    assert needs.roles == ("aligned", "unaligned")
    with pytest.raises(Exception):
        needs.images = True


@pytest.mark.parametrize("kwargs, message", [
    ({"spaces": ["w", "q"]}, "unknown space"),
    ({"models": "all"}, "aligned, unaligned, both"),
])
def test_needs_rejects_unknown_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Needs(**kwargs)


def test_make_config_fills_defaults_and_converts():
    cfg = Directions.make_config({"top_k": 3, "ratio": 1, "layers": ["b4.conv1"]})
    assert (cfg.top_k, cfg.ratio, cfg.method, cfg.layers) == (3, 1.0, "svd", ["b4.conv1"])
    assert isinstance(cfg.ratio, float)


def test_make_config_unknown_key_names_it_and_the_accepted_ones():
    with pytest.raises(ConfigError) as caught:
        Directions.make_config({"topk": 3})
    message = str(caught.value)
    assert "'directions.topk'" in message
    assert "layers, method, ratio, top_k" in message
    assert "did you mean 'top_k'" in message


@pytest.mark.parametrize("values, message", [
    ({"top_k": "3"}, "'directions.top_k' must be int, got str '3'"),
    ({"top_k": True}, "'directions.top_k' must be int, got bool True"),
    ({"method": "ica"}, "'directions.method' must be one of 'svd', 'pca'"),
    ({"layers": ["a", 2]}, "'directions.layers[1]' must be str"),
])
def test_make_config_wrong_type_is_one_clear_line(values, message):
    with pytest.raises(ConfigError) as caught:
        Directions.make_config(values)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_check_analyzer_class_explains_problems():
    check_analyzer_class(Directions)

    class NoDefaults(Directions):
        @dataclass
        class Config:
            required: int

    with pytest.raises(ValueError, match="need defaults: required"):
        check_analyzer_class(NoDefaults)

    class BadNeeds(Directions):
        needs = {"spaces": ["w"]}

    with pytest.raises(ValueError, match="Needs"):
        check_analyzer_class(BadNeeds)


def test_in_memory_sample_set_is_a_sample_set_and_names_missing_arrays():
    samples = InMemorySampleSet({"seeds": np.arange(4), "w": np.zeros((4, 8))})
    assert isinstance(samples, SampleSet)
    assert "w" in samples and "z" not in samples and len(samples) == 4
    with pytest.raises(KeyError, match="declare it"):
        samples["z"]


def test_context_generator_by_role_and_reproducible_rng(tmp_path):
    ctx = AnalysisContext(generators={"aligned": "G"}, work_dir=tmp_path, seed=7)
    assert ctx.generator() == "G"
    with pytest.raises(ConfigError, match="no 'unaligned' model"):
        ctx.generator("unaligned")
    assert ctx.rng(1).integers(1 << 30) == AnalysisContext({}, tmp_path, seed=7).rng(1).integers(1 << 30)
    assert ctx.rng(1).integers(1 << 30) != ctx.rng(2).integers(1 << 30)


def test_silent_progress_is_tqdm_shaped():
    with SilentProgress(range(3), desc="x") as bar:
        assert list(bar) == [0, 1, 2]
        bar.update(2)
    assert bar.n == 5
