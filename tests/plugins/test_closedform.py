"""SeFa and GANSpace: the directions on data with known answers, and both analyzers on the toy world."""
import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from sg3probe.cli.main import cli
from sg3probe.editing import load_direction
from sg3probe_closedform.directions import ganspace, sefa


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_sefa_directions_maximise_the_normalised_style_change():
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal((c, 12)) * rng.uniform(0.1, 5, (c, 1)) for c in (7, 5, 9)]
    found = sefa(weights, 12)
    a = np.concatenate([w / np.linalg.norm(w, axis=1, keepdims=True) for w in weights])  # [21, 12]
    np.testing.assert_allclose(found.vectors @ found.vectors.T, np.eye(12), atol=1e-10)
    assert np.all(np.diff(found.values) <= 1e-12)  # strongest first
    np.testing.assert_allclose(np.sum((a @ found.vectors.T) ** 2, axis=0), found.values, rtol=1e-10)
    trials = rng.standard_normal((2000, 12))
    trials /= np.linalg.norm(trials, axis=1, keepdims=True)
    assert np.sum((a @ trials.T) ** 2, axis=0).max() <= found.values[0] + 1e-9
    np.testing.assert_allclose(found.share.sum(), 1.0)
    # Each channel's weights are normalised, so scaling a layer's weights changes nothing.
    rescaled = sefa([weights[0] * 100, weights[1], weights[2] * 0.01], 12)
    np.testing.assert_allclose(rescaled.vectors, found.vectors, atol=1e-8)


def test_sefa_finds_a_planted_direction_and_its_rank():
    rng = np.random.default_rng(1)
    u = rng.standard_normal(16)
    u /= np.linalg.norm(u)
    # Every channel reads mostly u, with a little noise: u is the direction that moves the styles most.
    weights = [np.outer(rng.choice([-1, 1], 30) * rng.uniform(0.5, 2, 30), u) + 0.05 * rng.standard_normal((30, 16))]
    found = sefa(weights, 3)
    assert abs(found.vectors[0] @ u) >= 0.99
    assert found.share[0] > 0.9
    # An affine of rank 2 (the input affine has rank <= 4) gives 2 directions, in its row space.
    basis = np.linalg.qr(rng.standard_normal((16, 2)))[0]
    low = sefa([rng.standard_normal((4, 2)) @ basis.T], 10)
    assert len(low.vectors) == 2
    np.testing.assert_allclose(np.linalg.norm(low.vectors @ basis, axis=1), 1.0, atol=1e-8)


def test_directions_are_oriented_the_same_way_every_time():
    rng = np.random.default_rng(2)
    weights = [rng.standard_normal((10, 8))]
    first, again = sefa(weights, 8), sefa([w.copy() for w in weights], 8)
    np.testing.assert_array_equal(first.vectors, again.vectors)
    largest = first.vectors[np.arange(8), np.abs(first.vectors).argmax(axis=1)]
    assert np.all(largest > 0)


def test_ganspace_recovers_planted_axes_and_their_variances():
    rng = np.random.default_rng(3)
    axes = np.linalg.qr(rng.standard_normal((20, 20)))[0]
    stds = np.array([8.0, 5.0, 3.0, 2.0] + [0.3] * 16)
    data = (rng.standard_normal((20000, 20)) * stds) @ axes.T + 4.0  # a mean away from 0, as W has
    found = ganspace(np.array_split(data, 10), 4)
    for k in range(4):
        assert abs(found.vectors[k] @ axes[:, k]) >= 0.99
    np.testing.assert_allclose(found.stds, stds[:4], rtol=0.03)
    np.testing.assert_allclose(found.share, stds[:4] ** 2 / np.sum(stds ** 2), rtol=0.06)
    with pytest.raises(ValueError, match="smaller than the 4 components"):
        ganspace([data[:3]], 4)


def test_sefa_on_the_toy_world_finds_the_pose_in_the_unaligned_input_affine(tmp_path):
    out = tmp_path / "run"
    result = _invoke("run", "sefa", "--seeds", "0-39", "--out", out, "--set", "grid_size=2",
                     "--set", "sefa.components=3", "--set", "sefa.edit_samples=6")
    assert result.exit_code == 0, result.output
    folder = out / "results" / "sefa"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics) == {"aligned synthesis", "aligned input", "unaligned synthesis", "unaligned input"}
    # The aligned toy model was trained to keep its input transform at identity, the unaligned one to
    # draw the face's pose with it: only the unaligned input affine's directions turn the face.
    assert metrics["aligned input"]["max_turn_deg"] < 2
    assert metrics["unaligned input"]["max_turn_deg"] > 10
    components = pd.read_csv(folder / "tables" / "components.csv")
    synthesis = components[components["group"] == "synthesis"]
    assert len(synthesis) == 6 and set(synthesis["layers"]) == {"1-15"}
    assert synthesis["strongest_move_std"].abs().max() >= 1  # some direction edits an attribute
    row = synthesis.iloc[1]
    direction = load_direction(out / row["file"])
    assert direction.layers == list(range(1, 16)) and direction.space == "w"
    assert direction.projection_std == pytest.approx(row["sigma"], rel=1e-6)
    assert direction.metadata["kind"] == "sefa-direction" and direction.metadata["component"] == 1
    assert len(direction.metadata["model_sha256"]) == 64  # `sg3probe edit` warns when it meets another model
    figures = {p.name for p in (folder / "figures").iterdir()}
    assert {"spectrum.png", "what_each_direction_edits.png", "edits_unaligned_input.png"} <= figures
    assert "closed-form directions" in (out / "report.html").read_text()


def test_ganspace_runs_and_a_rerun_takes_each_model_from_the_work_folder(tmp_path):
    out = tmp_path / "run"
    args = ("run", "ganspace", "--seeds", "0-19", "--out", out, "--unaligned-model", "",
            "--set", "grid_size=2", "--set", "ganspace.components=2", "--set", "ganspace.edit_samples=4",
            "--set", "ganspace.pca_components=8", "--set", "ganspace.pca_samples=3000",
            "--set", "ganspace.chunk=1000")
    first = _invoke(*args)
    assert first.exit_code == 0, first.output
    table = (out / "results" / "ganspace" / "tables" / "components.csv").read_text()
    components = pd.read_csv(out / "results" / "ganspace" / "tables" / "components.csv")
    assert list(components["model"]) == ["aligned", "aligned"] and set(components["layers"]) == {"all"}
    assert components["share"].iloc[0] >= components["share"].iloc[1] > 0
    again = _invoke(*args)
    assert again.exit_code == 0, again.output
    assert "taken from" in (out / "run.log").read_text()
    assert (out / "results" / "ganspace" / "tables" / "components.csv").read_text() == table


@pytest.mark.parametrize("setting, message", [
    ("sefa.layers=\"0-3\"", "row 0 is the input affine"),
    ("sefa.strengths=\"0:3:4\"", "must go from below 0 to above 0"),
    ("sefa.edit_samples=50", "fewer than the 50 it edits"),
])
def test_sefa_settings_that_cannot_work_fail_before_sampling(tmp_path, setting, message):
    result = _invoke("run", "sefa", "--seeds", "0-9", "--out", tmp_path / "run", "--set", setting)
    assert result.exit_code != 0
    assert message in result.output
    assert not (tmp_path / "run" / "samples").exists()


def test_ganspace_refuses_more_components_than_it_computes(tmp_path):
    result = _invoke("run", "ganspace", "--seeds", "0-9", "--out", tmp_path / "run",
                     "--set", "ganspace.components=90")
    assert result.exit_code != 0 and "must be 1 to pca_components (80)" in result.output
