"""Loading checkpoints: NVIDIA pickles without executing code, our native format, clear errors."""
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import sg3probe
from sg3probe.checkpoints.nvidia_pickle import PersistentRecord, read_snapshot
from sg3probe.errors import CheckpointError, ModelNotFoundError, UnsafePickleError
from tests.checkpoints import nvidia_format


def _reference_error(G, fixture):
    ws = torch.from_numpy(fixture.reference["ws_psi1"])
    return np.abs(G.synthesis(ws).numpy() - fixture.reference["img_psi1"]).max()


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _Exploit(marker)}, protocol=4))
    with pytest.raises(UnsafePickleError, match=r"os\.system|posix\.system"):
        sg3probe.load_generator(path)
    assert not marker.exists()


def test_pickle_asking_for_builtins_eval_is_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(b"\x80\x04cbuiltins\neval\n(S'1+1'\ntR.")
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        read_snapshot(path)


def test_not_a_pickle(tmp_path):
    path = tmp_path / "notes.pkl"
    path.write_text("hello, I am text\n")
    with pytest.raises(CheckpointError, match="not a pickle"):
        sg3probe.load_generator(path)


def test_truncated_pickle(tmp_path, t64):
    path = tmp_path / "cut.pkl"
    path.write_bytes(t64.pickle_path.read_bytes()[:100_000])
    with pytest.raises(CheckpointError, match="truncated"):
        sg3probe.load_generator(path)


def test_stylegan2_generator_is_named(tmp_path):
    def record(name, modules=None, buffers=None):
        return PersistentRecord(name, "# training.networks_stylegan2", {
            "_parameters": {}, "_buffers": buffers or {}, "_modules": modules or {}, "_init_kwargs": {}})
    synthesis = record("SynthesisNetwork", {"b4": record("SynthesisBlock"), "b8": record("SynthesisBlock")})
    snapshot = {"G_ema": record("Generator", {"synthesis": synthesis, "mapping": record("MappingNetwork")})}
    path = tmp_path / "sg2.pkl"
    path.write_bytes(nvidia_format.dumps(snapshot))
    with pytest.raises(CheckpointError, match="StyleGAN2"):
        sg3probe.load_generator(path)


@pytest.mark.parametrize("ordered,protocol", [(True, 4), (False, 3)])
def test_rewritten_snapshot_loads_with_ordered_dicts_and_numpy1_names(tmp_path, t64, ordered, protocol):
    snapshot = read_snapshot(t64.pickle_path)
    data = nvidia_format.dumps({"G_ema": snapshot["G_ema"], "augment_pipe": None}, ordered=ordered, protocol=protocol)
    if protocol == 3:  # text GLOBAL opcodes, no frames: spell numpy's module the numpy-1.x way, as 2021 pickles do
        assert b"numpy._core.multiarray" in data
        data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    path = tmp_path / "snapshot.pkl"
    path.write_bytes(data)
    assert _reference_error(sg3probe.load_generator(path), t64) < 1e-4


def test_native_round_trip_and_convert(tmp_path, r64):
    G = sg3probe.load_generator(r64.pickle_path)
    path = sg3probe.save_generator(G, tmp_path / "r64.pt", metadata={"note": "test"})
    model = sg3probe.load_model(path)
    assert model.format == "sg3probe" and model.metadata == {"note": "test"}
    assert model.generator.config == G.config
    assert _reference_error(model.generator, r64) < 1e-4
    assert len(model.sha256) == 64


def test_native_file_of_another_kind_is_refused(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"some": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not an sg3probe generator checkpoint"):
        sg3probe.load_generator(path)


def test_missing_model_names_the_zoo(tmp_path):
    with pytest.raises(ModelNotFoundError, match="neither a file nor a zoo name"):
        sg3probe.load_generator(tmp_path / "nope.pkl")
