"""sg3probe.steps: a saved step comes back as it was, only under its own key, and never half-written."""
import numpy as np

from sg3probe.steps import SavedSteps, StepRecord


def test_a_step_comes_back_under_its_key_only(tmp_path):
    steps = SavedSteps(tmp_path, {"config": {"ratio": 0.3, "rows": (1, 2)}, "seed": np.int64(4)})
    assert steps.get("aligned") is None
    record = StepRecord(tables={"edits": [{"attribute": "smiling", "rate": np.float32(0.5), "std": float("nan")}]},
                        arrays={"normal": np.arange(6.0).reshape(2, 3), "grid": np.zeros((2, 4, 4, 3), np.uint8)})
    steps.put("aligned", record)
    back = SavedSteps(tmp_path, {"config": {"ratio": 0.3, "rows": [1, 2]}, "seed": 4}).get("aligned")  # same key
    assert back.tables["edits"][0]["attribute"] == "smiling" and back.tables["edits"][0]["rate"] == 0.5
    assert np.isnan(back.tables["edits"][0]["std"])
    np.testing.assert_array_equal(back.arrays["normal"], record.arrays["normal"])
    assert back.arrays["grid"].dtype == np.uint8
    assert SavedSteps(tmp_path, {"config": {"ratio": 0.2, "rows": [1, 2]}, "seed": 4}).get("aligned") is None
    assert steps.get("unaligned") is None


def test_a_step_cut_off_while_saving_is_absent(tmp_path):
    steps = SavedSteps(tmp_path, "key")
    steps.put("a/b", StepRecord(arrays={"x": np.ones(3)}))
    assert steps.get("a/b") is not None
    whole = (tmp_path / "a_b.npz").read_bytes()
    for broken in (b"not a zip", whole[:len(whole) // 2]):  # the arrays lost: the step is computed again
        (tmp_path / "a_b.npz").write_bytes(broken)
        assert steps.get("a/b") is None
    steps.put("a/b", StepRecord(arrays={"x": np.ones(3)}))
    (tmp_path / "a_b.json").unlink()  # the index is written last: without it there is no step
    assert steps.get("a/b") is None


def test_steps_belong_to_their_config_and_samples(tmp_path):
    from dataclasses import dataclass

    from sg3probe.analyzer import AnalysisContext, InMemorySampleSet

    @dataclass
    class Config:
        bins: int = 3

    ctx = AnalysisContext(generators={}, work_dir=tmp_path)
    samples = InMemorySampleSet({"seeds": np.arange(4), "w": np.ones((4, 2)), "s": {"L0": np.zeros((4, 3))}})
    ctx.saved_steps(Config(), samples).put("aligned", StepRecord(arrays={"x": np.ones(1)}))
    assert ctx.saved_steps(Config(), samples).get("aligned") is not None
    assert ctx.saved_steps(Config(bins=4), samples).get("aligned") is None  # other settings
    changed = InMemorySampleSet({**samples.arrays, "s": {"L0": np.ones((4, 3))}})
    assert ctx.saved_steps(Config(), changed).get("aligned") is None  # other samples
    assert ctx.saved_steps(Config(), samples, stage=2).get("aligned") is None  # another extra key
