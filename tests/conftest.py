"""Shared fixtures: the NVIDIA conformance networks from ../shared/conformance."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

CONFORMANCE = Path(__file__).resolve().parents[1].parent / "shared" / "conformance"
FIXTURE_NAMES = ("t64", "r64")


def conformance_file(name: str) -> Path:
    path = CONFORMANCE / name
    if not path.exists():
        pytest.skip(f"conformance fixture {path} is missing (it lives in ../shared beside the checkout)")
    return path


class Fixture:
    """One conformance network: its JSON description, weights and NVIDIA reference outputs."""

    def __init__(self, name: str):
        self.name = name
        self.meta = json.loads(conformance_file(f"{name}.json").read_text())
        self.reference = dict(np.load(conformance_file(f"{name}.reference.npz")))
        self.weights = dict(np.load(conformance_file(f"{name}.weights.npz")))
        self.pickle_path = conformance_file(f"{name}.nvidia.pkl")

    def generator_from_weights(self):
        from sg3probe.models.architecture import GeneratorConfig
        from sg3probe.models.generator import Generator

        G = Generator(GeneratorConfig.from_nvidia_kwargs(self.meta["init_kwargs"]))
        state = {k: torch.from_numpy(v) for k, v in self.weights.items() if k != "synthesis.input.transform"}
        G.load_state_dict(state, strict=True)
        return G.eval().requires_grad_(False)


_cache: dict[str, Fixture] = {}


@pytest.fixture(params=FIXTURE_NAMES, scope="session")
def fixture(request) -> Fixture:
    if request.param not in _cache:
        _cache[request.param] = Fixture(request.param)
    return _cache[request.param]


@pytest.fixture(scope="session")
def t64() -> Fixture:
    if "t64" not in _cache:
        _cache["t64"] = Fixture("t64")
    return _cache["t64"]


@pytest.fixture(scope="session")
def r64() -> Fixture:
    if "r64" not in _cache:
        _cache["r64"] = Fixture("r64")
    return _cache["r64"]
