"""The generator gates of issue 3 on the shipped toy generators (no training here; `toy evaluate` on
400 samples per model instead of 2000 to stay fast).
"""
import pytest
import torch

import sg3probe
from sg3probe.checkpoints import load_model
from sg3probe.toyworld.evaluation import evaluate_generator, format_gates
from sg3probe.toyworld.latents import noise_matrix_from_metadata


@pytest.fixture(scope="module")
def scorer():
    from sg3probe.plugin_manager import get_plugin_manager

    return get_plugin_manager().get_scorer("toyfaces")(device="cpu")


@pytest.mark.parametrize("name", ["toyfaces-aligned", "toyfaces-unaligned"])
def test_shipped_generator_meets_the_gates(scorer, name):
    torch.set_num_threads(1)
    model = load_model(name, "cpu")
    gates = evaluate_generator(model.generator, scorer, aligned=name.endswith("-aligned"), n=400,
                               noise_matrix=noise_matrix_from_metadata(model.metadata))
    failed = [gate for gate in gates if not gate.passed]
    assert not failed, format_gates(name, gates)


def test_shipped_generators_load_from_the_zoo_and_are_small():
    for name in ("toyfaces-aligned", "toyfaces-unaligned"):
        model = load_model(name, "cpu")
        assert model.path.stat().st_size <= 10 * 2 ** 20
        G = model.generator
        with torch.no_grad():
            images = G(torch.randn(4, G.z_dim))
        assert images.shape == (4, 3, 64, 64) and torch.isfinite(images).all()
        assert isinstance(sg3probe.load_generator(name), type(G))
