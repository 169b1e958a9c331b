"""The toy scorers: shipped weights meet the gates on fresh held-out renders; the plugin
registers the scorer and the zoo models; the generator gates of `toy evaluate` on tiny cases."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import sg3probe_toyworld
from sg3probe.cli.main import cli
from sg3probe.errors import ModelNotFoundError
from sg3probe.plugin_manager import PluginManager
from sg3probe.scorer import check_scores
from sg3probe.toyworld.attributes import ATTRIBUTES, NOISE_DIM, attributes_from_noise
from sg3probe.toyworld.evaluation import (
    ScoredSamples,
    check_gates,
    evaluate_generator,
    render_fidelity,
    gates_to_json,
    renderer_reference,
)
from sg3probe.toyworld.render import REGIONS, render
from sg3probe.toyworld.scorer_training import (
    GATES,
    HELD_OUT_SEED,
    TrainingConfig,
    augment,
    held_out_renders,
    measure,
    train_scorer_net,
)
from sg3probe_toyworld import SCORER_WEIGHTS, ToyFacesScorer

# Other seeds than the 1000 held-out renders measured right after training.
TEST_SEED = HELD_OUT_SEED + 12345


@pytest.fixture(scope="module")
def scorer() -> ToyFacesScorer:
    assert SCORER_WEIGHTS.is_file(), f"shipped scorer weights {SCORER_WEIGHTS} are missing"
    torch.set_num_threads(1)
    return ToyFacesScorer()


@pytest.fixture(scope="module")
def held_out_figures(scorer):
    batch = held_out_renders(500, TEST_SEED)
    return measure(scorer.predictor.predict(batch.images), batch)


# -- the gates of issue 3 part 2 on held-out renders -----------------------------------------------

def test_every_binary_attribute_is_at_least_95_percent_accurate(held_out_figures):
    for name, accuracy in held_out_figures["binary_accuracy"].items():
        assert accuracy >= GATES["binary_accuracy"], (name, accuracy)


def test_every_continuous_attribute_has_r2_of_at_least_0_9(held_out_figures):
    for name, r2 in held_out_figures["continuous_r2"].items():
        assert r2 >= GATES["continuous_r2"], (name, r2)


def test_segmentation_mean_iou_is_at_least_0_8(held_out_figures):
    assert held_out_figures["mean_iou"] >= GATES["mean_iou"], held_out_figures["region_iou"]


def test_pose_median_errors_are_within_3_degrees_and_1_pixel(held_out_figures):
    # On the unaligned half alone, where the pose varies, not only on all renders.
    assert held_out_figures["median_angle_error_deg_unaligned"] <= GATES["median_angle_error_deg"]
    assert held_out_figures["median_translation_error_px_unaligned"] <= GATES["median_translation_error_px"]
    assert all(held_out_figures["passed"].values()), held_out_figures["passed"]


def test_scores_survive_mild_degradation(scorer):
    # The augmentations of training stand in for a generator's artefacts.
    batch = held_out_renders(200, TEST_SEED + 1)
    degraded = augment(batch.images, torch.Generator().manual_seed(0))
    figures = measure(scorer.predictor.predict(degraded), batch)
    assert min(figures["binary_accuracy"].values()) >= 0.9
    assert min(figures["continuous_r2"].values()) >= 0.8
    assert figures["mean_iou"] >= 0.7


# -- the Scorer interface ----------------------------------------------------------------------------

def test_scorer_outputs_follow_the_interface(scorer):
    images = render(attributes_from_noise(torch.randn(6, NOISE_DIM), aligned=False)).images
    scores = check_scores(scorer, scorer.score(images), 6)
    assert list(scores) == [info.name for info in ATTRIBUTES]
    assert ToyFacesScorer.supports("segment") and ToyFacesScorer.supports("pose")
    assert not ToyFacesScorer.supports("embed_image")
    segmentation = scorer.segment(images)
    assert segmentation.masks.shape == (6, 64, 64) and segmentation.regions == REGIONS
    assert segmentation.masks.min() >= 0 and segmentation.masks.max() < len(REGIONS)
    pose = scorer.pose(images)
    assert sorted(pose) == ["angle_deg", "tx", "ty"]
    assert all(values.shape == (6,) for values in pose.values())


def test_one_network_pass_serves_score_segment_and_pose_of_the_same_images(scorer, monkeypatch):
    images = render(attributes_from_noise(torch.randn(3, NOISE_DIM), aligned=True)).images
    calls = []
    predict = scorer.predictor.predict
    monkeypatch.setattr(scorer.predictor, "predict", lambda x: calls.append(1) or predict(x))
    first = scorer.score(images)
    scorer.segment(images), scorer.pose(images)
    assert len(calls) == 1
    images.mul_(-1)  # changed in place: predicted again, and the answers follow the new pixels
    assert not np.allclose(scorer.score(images)["background_hue"], first["background_hue"])
    scorer.score(images.clone())  # another tensor
    assert len(calls) == 3


def test_scorer_reads_a_smile_where_the_renderer_drew_one(scorer):
    params = attributes_from_noise(torch.randn(8, NOISE_DIM), aligned=True)
    smiling = render(params.replace(smiling=torch.ones(8, dtype=torch.bool))).images
    closed = render(params.replace(smiling=torch.zeros(8, dtype=torch.bool))).images
    assert (scorer.score(smiling)["smiling"] > 0).all()
    assert (scorer.score(closed)["smiling"] < 0).all()


def test_weights_file_is_a_plain_state_dict_of_a_few_megabytes():
    payload = torch.load(SCORER_WEIGHTS, map_location="cpu", weights_only=True)
    assert payload["format"] == "sg3probe-toyfaces-scorer"
    assert tuple(payload["regions"]) == REGIONS
    assert all(isinstance(t, torch.Tensor) for t in payload["state_dict"].values())
    assert SCORER_WEIGHTS.stat().st_size < 5 * 2**20


# -- the plugin --------------------------------------------------------------------------------------

def test_plugin_registers_the_scorer_and_both_models():
    manager = PluginManager()
    manager.register(sg3probe_toyworld, name="toyworld")
    assert manager.get_scorer("toyfaces") is ToyFacesScorer
    models = manager.get_models()
    assert set(models) == {"toyfaces-aligned", "toyfaces-unaligned"}
    for name, entry in models.items():
        assert entry.kind == "stylegan3-t" and entry.resolution == 64
        assert entry.path.parent == SCORER_WEIGHTS.parent and entry.path.name == f"{name}.pt"
        if entry.path.is_file():
            from sg3probe.checkpoints import file_sha256
            assert entry.sha256 == file_sha256(entry.path)
    assert not manager.errors


def test_installed_entry_point_provides_the_toy_world():
    from sg3probe.plugin_manager import build_plugin_manager

    manager = build_plugin_manager()
    assert "toyfaces" in manager.get_scorers()
    assert {"toyfaces-aligned", "toyfaces-unaligned"} <= set(manager.get_models())


def test_missing_model_file_registers_and_fails_clearly_when_loaded(tmp_path, monkeypatch):
    monkeypatch.setattr(sg3probe_toyworld, "WEIGHTS_DIR", tmp_path)
    manager = PluginManager()
    manager.register(sg3probe_toyworld, name="toyworld")
    entry = manager.get_model("toyfaces-aligned")
    assert entry.sha256 == "" and "missing" in entry.description
    import sg3probe.zoo
    monkeypatch.setattr(sg3probe.zoo, "find_model_entry", lambda name: entry)
    with pytest.raises(ModelNotFoundError, match="weights file .* is missing"):
        sg3probe.load_generator("toyfaces-aligned")


# -- training ----------------------------------------------------------------------------------------

def test_training_is_deterministic_in_its_seed():
    config = TrainingConfig(steps=2, batch_size=4, channels=(4, 4, 4, 4, 4), hidden=8)
    first, second = train_scorer_net(config), train_scorer_net(config)
    for name, tensor in first.state_dict().items():
        assert torch.equal(tensor, second.state_dict()[name]), name


def test_augment_keeps_shape_and_range_and_is_seeded():
    images = held_out_renders(8).images
    a = augment(images, torch.Generator().manual_seed(3))
    b = augment(images, torch.Generator().manual_seed(3))
    assert a.shape == images.shape and torch.equal(a, b)
    assert a.min() >= -1 and a.max() <= 1 and not torch.equal(a, images)


def test_train_scorers_command_writes_a_loadable_file(tmp_path):
    result = CliRunner().invoke(cli, ["toy", "train-scorers", "--out", str(tmp_path), "--steps", "1",
                                      "--held-out", "10"])
    assert (tmp_path / "scorers.pt").is_file()
    assert result.exit_code == 1 and "gates failed" in result.output  # one step learns nothing
    ToyFacesScorer(weights=tmp_path / "scorers.pt")


# -- the generator gates (toy evaluate) ----------------------------------------------------------------

class RendererGenerator:
    """A stand-in generator whose z is the renderer's noise: it meets every gate by construction."""

    z_dim = NOISE_DIM
    device = torch.device("cpu")

    def __init__(self, aligned: bool) -> None:
        self.aligned = aligned

    def __call__(self, z, c=None, truncation_psi=1.0):
        return render(attributes_from_noise(z, self.aligned)).images


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("ground_truth", [True, False])
def test_renders_pass_every_generator_gate(scorer, aligned, ground_truth):
    matrix = torch.eye(NOISE_DIM) if ground_truth else None  # z is the renderer's noise
    gates = evaluate_generator(RendererGenerator(aligned), scorer, aligned=aligned, n=200, batch_size=100,
                               noise_matrix=matrix)
    failed = [g for g in gates if not g.passed]
    assert not failed, failed
    names = [g.name for g in gates]
    assert ("mean |angle| (deg)" in names) == aligned and ("angle std / renderer's" in names) != aligned
    assert gates_to_json(gates)["passed"] is True
    assert any(g.name == f"region hair found {'where expected' if ground_truth else '/ expected'}"
               for g in gates)


def test_render_fidelity_is_zero_for_the_renderer_and_grows_with_blur():
    exact = render_fidelity(RendererGenerator(aligned=True), aligned=True, noise_matrix=torch.eye(NOISE_DIM),
                            n=20, batch_size=10)
    assert {"eyes", "mouth", "all pixels"} <= set(exact) <= {*REGIONS, "all pixels"}
    assert max(exact.values()) < 1e-6

    class Blurred(RendererGenerator):
        def __call__(self, z, c=None, truncation_psi=1.0):
            return torch.nn.functional.avg_pool2d(super().__call__(z), 5, stride=1, padding=2,
                                                  count_include_pad=False)

    blurred = render_fidelity(Blurred(aligned=True), aligned=True, noise_matrix=torch.eye(NOISE_DIM), n=20,
                              batch_size=10)
    # Blur wipes out the small parts much more than the large ones.
    assert blurred["eyes"] > 3 * blurred["background"] > 0


def test_gates_fail_for_a_collapsed_generator():
    reference = renderer_reference(aligned=True, n=500)
    n = 100
    scores = {info.name: np.full(n, 4.0 if info.kind == "binary" else 0.5, dtype=np.float32)
              for info in ATTRIBUTES}
    scores["bangs"] = np.zeros(n, dtype=np.float32)  # probability 0.5: undecided
    samples = ScoredSamples(scores, angle_deg=np.full(n, 10.0),
                            regions_found=np.zeros((n, len(REGIONS)), dtype=bool))
    gates = {g.name: g for g in check_gates(samples, reference)}
    assert not gates["smiling frequency"].passed  # always on, the renderer 50 %
    assert gates["skin_tone mean"].passed and not gates["skin_tone std / renderer's"].passed
    assert not gates["samples with an undecided binary attribute"].passed
    assert math.isclose(gates["mean |angle| (deg)"].value, 10.0) and not gates["mean |angle| (deg)"].passed
    assert not gates["region hair found / expected"].passed
    with_truth = ScoredSamples(scores, samples.angle_deg, samples.regions_found,
                               regions_expected=np.ones((n, len(REGIONS)), dtype=bool))
    gates = {g.name: g for g in check_gates(with_truth, reference)}
    assert gates["region eyes found where expected"].value == 0.0
    assert not gates["region eyes found where expected"].passed
