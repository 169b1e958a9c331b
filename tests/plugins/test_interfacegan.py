"""InterFaceGAN: boundaries and projections on synthetic data with known answers, edit effect
summaries, strength/layer syntax, the `sg3probe edit` round trip, and the analyzer end to end."""
import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import sg3probe
from sg3probe.boundaries import Boundary, conditional_boundary, train_boundary
from sg3probe.cli.edit_commands import render_latents
from sg3probe.cli.main import cli
from sg3probe.edit_effects import change_rate, mean_shift, target_response
from sg3probe.editing import load_direction, parse_layers, parse_strengths
from sg3probe.errors import ConfigError
from sg3probe.sampling.sampler import style_layout
from sg3probe_interfacegan.row_search import forward_rows


def _unit(v):
    return v / np.linalg.norm(v)


# ----- boundaries ------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_direction_is_recovered_with_its_offset(seed):
    rng = np.random.default_rng(seed)
    planted = _unit(rng.standard_normal(32))
    codes = rng.standard_normal((4000, 32)) + 2 * rng.standard_normal(32)  # an offset the intercept must absorb
    scores = codes @ planted + 0.05 * rng.standard_normal(4000)
    boundary = train_boundary(codes, scores, ratio=0.2, random_state=seed)
    assert boundary.normal @ planted >= 0.99
    assert boundary.validation_accuracy >= 0.99
    # Middle samples (between the 800 extremes of each side) are labelled by score > (max + min) / 2.
    order = np.argsort(-scores)[800:-800]
    labels = scores[order] > (scores.max() + scores.min()) / 2
    assert boundary.middle_accuracy == pytest.approx(np.mean((boundary.distance(codes[order]) > 0) == labels))
    assert boundary.projection_std == pytest.approx(1.0, abs=0.05)
    # The intercept is kept: the hyperplane splits the samples where the scores do.
    assert np.mean((boundary.distance(codes) > 0) == (scores > np.median(scores))) >= 0.9
    assert boundary.train_count == int(800 * 0.7) and boundary.validation_count == 2 * (800 - 560)


def test_training_is_seeded_and_drops_invalid_scores():
    rng = np.random.default_rng(3)
    codes = rng.standard_normal((300, 8))
    scores = codes[:, 0].copy()
    scores[:10] = np.nan
    a = train_boundary(codes, scores, ratio=0.3, random_state=5)
    b = train_boundary(codes, scores, ratio=0.3, random_state=5)
    np.testing.assert_array_equal(a.normal, b.normal)
    assert a.train_count == int(int(290 * 0.3) * 0.7)  # chosen from the 290 valid samples
    assert train_boundary(codes, scores, ratio=40).train_count == 28  # ratio > 1 is a count
    with pytest.raises(ValueError, match="too few"):
        train_boundary(codes[:4], scores[10:14], ratio=0.1)


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_conditional_projection_is_orthogonal_to_every_condition(count):
    rng = np.random.default_rng(count)
    normal = rng.standard_normal(64)
    shared = rng.standard_normal(64)
    conditions = [_unit(shared + rng.standard_normal(64)) for _ in range(count)]  # correlated with each other
    result = conditional_boundary(normal, conditions)
    assert np.linalg.norm(result) == pytest.approx(1.0)
    for condition in conditions:
        assert abs(result @ condition) < 1e-6
    assert result @ _unit(normal) > 0  # what is left still points the same way
    if count == 2:  # the spec's closed form agrees with the general solve
        matrix = np.stack(conditions)
        general = _unit(normal) - np.linalg.solve(matrix @ matrix.T, matrix @ _unit(normal)) @ matrix
        np.testing.assert_allclose(result, _unit(general), atol=1e-6)


def test_conditional_boundary_halves_the_side_effect_on_correlated_data():
    """Attributes A and B read two directions at 60 degrees; the known answer for 'A without B'
    is a minus its component along b, which leaves B unchanged."""
    rng = np.random.default_rng(7)
    dims, count = 24, 4000
    a = _unit(rng.standard_normal(dims))
    b = _unit(0.5 * a + np.sqrt(0.75) * _unit(rng.standard_normal(dims) - (rng.standard_normal(dims) @ a) * a))
    codes = rng.standard_normal((count, dims))
    score_a = codes @ a + 0.05 * rng.standard_normal(count)
    score_b = codes @ b + 0.05 * rng.standard_normal(count)
    boundary_a = train_boundary(codes, score_a, ratio=0.2)
    boundary_b = train_boundary(codes, score_b, ratio=0.2)
    conditional = conditional_boundary(boundary_a.normal, [boundary_b.normal])
    known = _unit(a - (a @ b) * b)
    assert conditional @ known >= 0.98
    # Side effect on B of an edit that moves A by one unit, before and after conditioning.
    unconditional_side = abs(boundary_a.normal @ b) / (boundary_a.normal @ a)
    conditional_side = abs(conditional @ b) / (conditional @ a)
    assert unconditional_side > 0.4
    assert conditional_side <= unconditional_side / 2


def test_boundary_files_round_trip_and_read_as_a_direction(tmp_path):
    boundary = Boundary(normal=_unit(np.arange(1.0, 9.0)), intercept=-0.25, space="w", attribute="smiling",
                        model_sha256="ab" * 32, validation_accuracy=0.97, middle_accuracy=float("nan"),
                        projection_std=1.7, train_count=10, validation_count=8, conditions=["eyeglasses"])
    path = boundary.save(tmp_path / "smiling")
    assert path.name == "smiling.npy" and np.load(path).shape == (1, 8)
    sidecar = json.loads((tmp_path / "smiling.json").read_text())
    assert sidecar["middle_accuracy"] is None and sidecar["conditions"] == ["eyeglasses"]
    loaded = Boundary.load(path)
    np.testing.assert_allclose(loaded.normal, boundary.normal, rtol=1e-6)
    assert (loaded.intercept, loaded.projection_std, loaded.model_sha256) == (-0.25, 1.7, "ab" * 32)
    assert np.isnan(loaded.middle_accuracy)
    direction = load_direction(path)
    assert direction.space == "w" and direction.projection_std == 1.7 and direction.attribute == "smiling"
    np.testing.assert_allclose(direction.raw_strengths(np.array([-1.0, 2.0]), raw=False), [-1.7, 3.4])


def test_binary_classes_never_take_samples_from_the_other_side_of_the_decision():
    from sg3probe_interfacegan.analyzer import _class_size

    logits = np.concatenate([np.full(10, 2.0), np.full(90, -1.0)])  # 10 % positive
    assert _class_size("rare", logits, "binary", 0.3) == 10  # not 30: 20 negatives would count as positives
    assert _class_size("rare", logits, "continuous", 0.3) == 0.3
    with pytest.raises(ConfigError, match="all but 2"):
        _class_size("never", np.concatenate([[1.0, 1.0], -np.ones(98)]), "binary", 0.3)


# ----- syntax and summaries --------------------------------------------------------------------

def test_strengths_include_both_ends():
    np.testing.assert_allclose(parse_strengths("-3:3:7"), [-3, -2, -1, 0, 1, 2, 3])
    np.testing.assert_allclose(parse_strengths("-5:5:3"), [-5, 0, 5])
    np.testing.assert_allclose(parse_strengths("-2,0,2.5"), [-2, 0, 2.5])
    np.testing.assert_allclose(parse_strengths("1.5"), [1.5])
    for bad in ("-3:3:1", "three", "1:2:0", ""):
        with pytest.raises(ConfigError):
            parse_strengths(bad)
    for bad in ("nan", "inf,1", "-1e999:3:4"):
        with pytest.raises(ConfigError, match="finite"):
            parse_strengths(bad)
    with pytest.raises(ConfigError, match="^--alpha 'abc' is neither"):  # the message names the setting
        parse_strengths("abc", "--alpha")


def test_layers_parse_and_reject_rows_the_model_lacks():
    assert parse_layers("0-7", 16) == list(range(8))
    assert parse_layers("8-15,0,3", 16) == [0, 3] + list(range(8, 16))
    assert parse_layers(None, 4) == [0, 1, 2, 3] == parse_layers("all", 4)
    with pytest.raises(ConfigError, match="rows 0-15"):
        parse_layers("10-16", 16)


def test_forward_row_selection_stops_when_the_gain_is_small():
    # Rows 2 and 5 carry the target (0.6 and 0.3); row 7 adds 0.02 only; row 4 carries a side effect.
    gains = {2: 0.6, 5: 0.3, 7: 0.02, 4: 0.5}
    side = {4: 0.4}

    def objective(rows):
        return sum(gains.get(r, 0.0) for r in rows) - 2.0 * sum(side.get(r, 0.0) for r in rows)

    assert forward_rows(objective, list(range(8)), min_gain=0.05) == ([2, 5], pytest.approx(0.9))
    assert forward_rows(objective, list(range(8)), min_gain=0.01)[0] == [2, 5, 7]
    assert forward_rows(lambda rows: 0.0, list(range(8)), min_gain=0.05) == ([], 0.0)  # nothing gains


def test_edit_summaries_on_known_scores():
    strengths_by_samples = np.array([[-2.0, -1.0, 0.5], [-0.5, 0.2, 0.6], [1.0, 1.5, 2.0]])  # [S=3, n=3]
    response = target_response(strengths_by_samples, "binary", natural_std=1.0)
    assert response["success_rate"] == pytest.approx(2 / 3)  # the third sample never goes below 0
    assert response["monotone_rate"] == 1.0
    continuous = np.array([[0.1, 0.5], [0.4, 0.2], [0.9, 0.55]])
    response = target_response(continuous, "continuous", natural_std=0.5)
    assert response["success_rate"] == 0.5 and response["monotone_rate"] == 0.5
    original = np.array([0.3, -0.3])
    assert change_rate(np.array([[0.2, -0.4], [0.4, 0.1]]), original, "binary", 1.0) == 0.5
    assert change_rate(np.array([[0.3, 0.5]]), np.array([0.0, 0.0]), "continuous", 0.4) == 0.5
    assert mean_shift(np.array([[0.0, 1.0], [1.0, 3.0]]), 2.0) == pytest.approx(0.75)


# ----- sg3probe edit ---------------------------------------------------------------------------

def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _written(outdir, latents):
    names = [f"{source}_{value:+.2f}".replace(".", "p") + ".png"
             for source, value in zip(latents["source"], latents["strength"])]
    return np.stack([np.asarray(Image.open(outdir / "images" / name)) for name in names])


@pytest.mark.parametrize("space", ["w", "s"])
def test_edit_latents_re_render_to_the_written_images(tmp_path, t64, space):
    G = sg3probe.load_generator(t64.pickle_path)
    dims = G.w_dim if space == "w" else sum(style_layout(G).values())
    Boundary(normal=_unit(np.random.default_rng(0).standard_normal(dims)), space=space, attribute="planted",
             projection_std=3.0).save(tmp_path / "planted")
    layers = ["--layers", "0-7"] if space == "w" else []
    out = tmp_path / "edit"
    result = _invoke("edit", tmp_path / "planted.npy", "--model", t64.pickle_path, "--seeds", "1,4",
                     "--strength", "-2:2:3", "--rotate", "10", "--outdir", out, "--gif", *layers)
    assert result.exit_code == 0, result.output
    latents = np.load(out / "latents.npz")
    assert list(latents["source"]) == ["seed0001"] * 3 + ["seed0004"] * 3
    np.testing.assert_allclose(latents["raw_strength"], np.tile([-6.0, 0.0, 6.0], 2))
    assert Image.open(out / "edit.gif").n_frames == 4 and Image.open(out / "grid.png").size[0] > 3 * 64
    rendered = render_latents(G, out / "latents.npz")
    expected = (rendered * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy().astype(int)
    assert np.abs(_written(out, latents).astype(int) - expected).max() <= 1  # batches differ: float rounding only
    ws = torch.from_numpy(latents["ws"])
    if space == "w":  # only rows 0-7 moved, by 2 sigma = 6 raw units
        step = (ws[2] - ws[1]).numpy()
        np.testing.assert_allclose(np.linalg.norm(step[:8], axis=1), 6.0, rtol=1e-4)
        assert np.abs(step[8:]).max() == 0
    else:
        assert str(latents["render_from"]) == "styles" and torch.equal(ws[0], ws[2])  # S edits keep ws


def test_edit_writes_an_mp4_strip(tmp_path, t64):
    av = pytest.importorskip("av", reason="PyAV (the `video` extra) is not installed: MP4 writing is untested")
    G = sg3probe.load_generator(t64.pickle_path)
    Boundary(normal=_unit(np.ones(G.w_dim)), space="w", attribute="ones", projection_std=1.0).save(tmp_path / "d")
    out = tmp_path / "edit"
    result = _invoke("edit", tmp_path / "d.npy", "--model", t64.pickle_path, "--seeds", "0-2",
                     "--strength", "-2:2:5", "--outdir", out, "--mp4")
    assert result.exit_code == 0, result.output
    with av.open(str(out / "edit.mp4")) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(frames) == 5 + 3  # there and back
    # Frame k is strength k: the three sources side by side (1 px white gaps), H.264-coded.
    for k, label in [(0, "-2p00"), (4, "+2p00")]:
        for i in range(3):
            expected = np.asarray(Image.open(out / "images" / f"seed000{i}_{label}.png").convert("RGB")).astype(int)
            got = frames[k][1:65, 1 + 65 * i:65 + 65 * i].astype(int)
            assert np.abs(got - expected).mean() < 8


def test_edit_reads_generated_latents_and_sample_stores(tmp_path, t64):
    G = sg3probe.load_generator(t64.pickle_path)
    np.save(tmp_path / "raw.npy", np.ones(G.w_dim, np.float32))  # a bare direction: raw units only
    assert _invoke("generate", "--model", t64.pickle_path, "--seeds", "2", "--outdir", tmp_path / "gen",
                   "--save-latents").exit_code == 0
    result = _invoke("edit", tmp_path / "raw.npy", "--model", t64.pickle_path, "--latents", tmp_path / "gen",
                     "--strength", "0,1", "--outdir", tmp_path / "a")
    assert result.exit_code != 0 and "--raw" in result.output  # sigmas need a projection_std
    result = _invoke("edit", tmp_path / "raw.npy", "--model", t64.pickle_path, "--latents", tmp_path / "gen",
                     "--strength", "0,1", "--raw", "--outdir", tmp_path / "a")
    assert result.exit_code == 0, result.output
    generated = np.asarray(Image.open(tmp_path / "gen" / "seed0002.png")).astype(int)
    unedited = np.asarray(Image.open(tmp_path / "a" / "images" / "seed0002_+0p00.png")).astype(int)
    assert np.abs(generated - unedited).max() <= 1
    from sg3probe.sampling.sampler import SamplingSpec, sample_to_store
    sample_to_store(tmp_path / "store", G, SamplingSpec(seeds="0-3", spaces=("w",)), progress=False)
    result = _invoke("edit", tmp_path / "raw.npy", "--model", t64.pickle_path, "--store", tmp_path / "store",
                     "--seeds", "2", "--strength", "0,1", "--raw", "--outdir", tmp_path / "b")
    assert result.exit_code == 0, result.output
    from_store = np.asarray(Image.open(tmp_path / "b" / "images" / "seed0002_+1p00.png")).astype(int)
    from_file = np.asarray(Image.open(tmp_path / "a" / "images" / "seed0002_+1p00.png")).astype(int)
    assert np.abs(from_store - from_file).max() <= 1
    result = _invoke("edit", tmp_path / "raw.npy", "--model", t64.pickle_path, "--seeds", "1",
                     "--latents", tmp_path / "gen", "--raw", "--outdir", tmp_path / "c")
    assert result.exit_code != 0 and "exactly one source" in result.output


# ----- the analyzer end to end -----------------------------------------------------------------

SCORER_PLUGIN = '''
import numpy as np
import sg3probe
from sg3probe.scorer import Attribute, Scorer, Segmentation

class Tones(Scorer):
    name = "tones"
    attributes = (Attribute("bright", "binary"), Attribute("red", "continuous"))
    def __init__(self, device="cpu"):
        pass
    def score(self, images):
        x = images.detach().float().cpu().numpy()
        return {"bright": (x.mean(axis=(1, 2, 3)) - 0.115) * 20, "red": x[:, 0].mean(axis=(1, 2)) - x[:, 1:].mean(axis=(1, 2, 3))}
    def segment(self, images):
        masks = np.zeros((images.shape[0], images.shape[2], images.shape[3]), int)
        masks[:, images.shape[2] // 2:] = 1
        return Segmentation(masks, ("top", "bottom"))

@sg3probe.hookimpl
def register_scorers(register):
    register(Tones)
'''


def test_analyzer_runs_end_to_end_on_t64(tmp_path, t64):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "tones_scorer.py").write_text(SCORER_PLUGIN)
    out = tmp_path / "run"
    result = _invoke("run", "interfacegan", "--model", t64.pickle_path, "--unaligned-model", t64.pickle_path,
                     "--scorer", "tones", "--seeds", "0-23", "--plugins-dir", plugins, "--out", out,
                     "--set", "grid_size=2", "--set", "interfacegan.edit_samples=3",
                     "--set", 'interfacegan.strengths="-2:2:3"', "--set", "interfacegan.layer_samples=1",
                     "--set", "interfacegan.single_layers=false", "--set", "interfacegan.grid_samples=1",
                     "--set", 'interfacegan.regions={bright="top"}', "--set", 'interfacegan.unaligned_views=["transformed"]',
                     "--set", "interfacegan.auto_condition=false", "--set", 'interfacegan.conditions=["red"]')
    assert result.exit_code == 0, result.output
    folder = out / "results" / "interfacegan"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics["boundaries"]) == {"aligned", "unaligned"}
    assert metrics["boundary_dir"] == "work/interfacegan/boundaries"  # inside the run folder, so it may move
    assert set(metrics["edits"]) == {"aligned", "unaligned (transformed)"}
    accuracy = metrics["boundaries"]["aligned"]["w"]["bright"]["validation_accuracy"]
    assert 0 <= accuracy <= 1
    figures = {p.name for p in (folder / "figures").iterdir()}
    assert {"response_curves.png", "entanglement.png", "layer_ranges.png"} <= figures
    assert any(name.startswith("edits_unaligned_transformed") for name in figures)
    edits = (folder / "tables" / "edits.csv").read_text()
    assert "share_inside" in edits  # the segmenting scorer gave pixel-change statistics
    assert set(metrics["conditional"]["aligned"]) == {"bright | red"}  # the configured condition only
    boundary = out / "work" / "interfacegan" / "boundaries" / "aligned" / "w" / "bright.json"
    sidecar = json.loads(boundary.read_text())
    assert sidecar["model_sha256"] == t64.meta["pickle"]["sha256"] and sidecar["projection_std"] > 0
    html = (out / "report.html").read_text()
    assert "InterFaceGAN boundaries and edits" in html and "Layer ranges" in html


# ----- the analyzer on a generator whose answers are known -------------------------------------

class _RowsGenerator(torch.nn.Module):
    """A stand-in generator: attribute a is read from ws rows 0-1, b from rows 2-3 and c from
    rows 4-5, along directions where c's is at 60 degrees to b's (so b and c correlate)."""

    w_dim, num_ws = 8, 6

    def __init__(self):
        super().__init__()
        q = np.linalg.qr(np.random.default_rng(0).standard_normal((8, 3)))[0]  # orthonormal columns
        a, b, c = q[:, 0], q[:, 1], 0.5 * q[:, 1] + np.sqrt(0.75) * q[:, 2]
        self.register_buffer("w_avg", torch.zeros(8))
        self.register_buffer("reads", torch.tensor(np.stack([a, b, c]), dtype=torch.float32))  # [3, w_dim]

    @property
    def device(self):
        return self.w_avg.device

    def synthesis(self, ws, transform=None):
        values = torch.stack([(ws[:, 2 * i:2 * i + 2] @ self.reads[i]).mean(1) for i in range(3)], 1)  # [B, 3]
        return torch.tanh(values / 3)[:, :, None, None].expand(-1, 3, 4, 4)


class _ChannelScorer(sg3probe.scorer.Scorer):
    name = "channels"
    attributes = (sg3probe.scorer.Attribute("a", "binary"), sg3probe.scorer.Attribute("b", "continuous"),
                  sg3probe.scorer.Attribute("c", "continuous"))

    def score(self, images):
        means = images.mean(dim=(2, 3)).numpy()
        return {"a": means[:, 0] * 10, "b": means[:, 1], "c": means[:, 2]}


def test_analyzer_finds_the_rows_and_removes_the_correlated_side_effect(tmp_path):
    from sg3probe.analyzer import AnalysisContext, InMemorySampleSet
    from sg3probe_interfacegan.analyzer import InterFaceGAN

    G, scorer = _RowsGenerator(), _ChannelScorer()
    w = torch.from_numpy(np.random.default_rng(1).standard_normal((600, 8)).astype(np.float32))
    ws = w[:, None].repeat(1, 6, 1)
    sample_set = InMemorySampleSet({"seeds": np.arange(600), "w": w.numpy(), "wplus": ws.numpy(),
                                    "scores": scorer.score(G.synthesis(ws))})
    samples = {"aligned": sample_set, "unaligned": sample_set}
    cfg = InterFaceGAN.make_config({"edit_samples": 40, "strengths": "-2:2:3", "layer_samples": 40,
                                    "layer_ranges": {"first": "0-1", "middle": "2-3", "last": "4-5"},
                                    "single_layers": False, "grid_samples": 0})
    ctx = AnalysisContext(generators={"aligned": G, "unaligned": G}, work_dir=tmp_path, scorer=scorer)
    result = InterFaceGAN().analyze(samples, ctx, cfg)
    assert set(result.metrics["edits"]) == {"aligned", "unaligned (pseudo-aligned)", "unaligned (transformed)"}
    layers = result.tables["layers"].query("model == 'aligned'").set_index(["attribute", "layers"])["relative_effect"]
    for attribute, home in (("a", "first 0-1"), ("b", "middle 2-3"), ("c", "last 4-5")):
        assert layers[attribute, home] > 0.8
        assert all(abs(layers[attribute, other]) < 0.15 for other in ("first 0-1", "middle 2-3", "last 4-5")
                   if other != home)
    conditional = result.tables["conditional"].query("model == 'aligned'").set_index(["attribute", "condition"])
    assert set(conditional.index) == {("b", "c"), ("c", "b")}  # a correlates with neither
    for pair in conditional.index:
        row = conditional.loc[pair]
        assert row["side_effect_conditional"] <= row["side_effect_unconditional"] / 2
    edits = result.tables["edits"].query("model == 'aligned'")
    assert (edits["success_rate"] >= 0.9).all()  # on every row and on the attribute's own rows
    every_row = edits.query("space == 'w'").set_index("attribute")
    assert every_row.loc["a", "worst_uncorrelated_change_rate"] <= 0.1  # editing a leaves b and c alone
    boundaries = result.tables["boundaries"].query("model == 'aligned'").set_index("attribute")
    assert (boundaries["validation_accuracy"] >= 0.95).all()
    assert (tmp_path / "boundaries" / "aligned" / "w" / "b_conditional.json").is_file()
    # The row search finds each attribute's own rows, and editing b there leaves c (which reads other
    # rows along a correlated direction) alone, where the edit of every row moves it.
    found = result.tables["attribute rows"].set_index(["model", "attribute"])["rows"]
    assert [found["aligned", name] for name in "abc"] == ["0-1", "2-3", "4-5"]
    # Pseudo-alignment sets ws[:, 0] = w_avg after the edit, so row 0 moves nothing there.
    assert [found["unaligned (pseudo-aligned)", name] for name in "abc"] == ["1", "2-3", "4-5"]
    own = result.tables["entanglement"].query("model == 'aligned' and edited == 'b' and measured == 'c'")
    rates = own.set_index("edit")["change_rate"]
    assert rates["own rows"] == 0 and rates["all rows"] > 0.5
    assert load_direction(tmp_path / "boundaries" / "aligned" / "w" / "b_rows.npy").layers == [2, 3]
    # The reach table at the full reach repeats the edit table; at a shorter reach it is measured on fewer strengths.
    reach = result.tables["reach"].set_index(["model", "space", "attribute", "reach_sigma"])
    for row in result.tables["edits"].itertuples():
        assert reach.loc[(row.model, row.space, row.attribute, 2.0), "success_rate"] == row.success_rate
    assert len(reach) == len(result.tables["edits"])  # "-2:2:3" has one reach: 2 sigma


def test_an_attribute_a_model_never_varies_is_left_out_for_that_model_only(tmp_path):
    from sg3probe.analyzer import AnalysisContext, InMemorySampleSet
    from sg3probe_interfacegan.analyzer import InterFaceGAN

    G, scorer = _RowsGenerator(), _ChannelScorer()
    w = torch.from_numpy(np.random.default_rng(1).standard_normal((300, 8)).astype(np.float32))
    ws = w[:, None].repeat(1, 6, 1)
    scores = scorer.score(G.synthesis(ws))
    never = dict(scores, a=-np.abs(scores["a"]) - 1)  # this model's samples never have a
    aligned = InMemorySampleSet({"seeds": np.arange(300), "w": w.numpy(), "wplus": ws.numpy(), "scores": scores})
    unaligned = InMemorySampleSet({"seeds": np.arange(300), "w": w.numpy(), "wplus": ws.numpy(), "scores": never})
    cfg = InterFaceGAN.make_config({"edit_samples": 20, "strengths": "-2:2:3", "layer_roles": [],
                                    "single_layers": False, "grid_samples": 0, "unaligned_views": ["natural"]})
    ctx = AnalysisContext(generators={"aligned": G, "unaligned": G}, work_dir=tmp_path, scorer=scorer)
    result = InterFaceGAN().analyze({"aligned": aligned, "unaligned": unaligned}, ctx, cfg)
    assert set(result.metrics["boundaries"]["aligned"]["w"]) == {"a", "b", "c"}
    assert set(result.metrics["boundaries"]["unaligned"]["w"]) == {"b", "c"}
    skipped = result.tables["not studied"]
    assert skipped[["model", "attribute"]].values.tolist() == [["unaligned", "a"]]
    assert "all but 0 of" in skipped["why"].iloc[0]


def test_prepare_refuses_a_run_it_cannot_finish_before_any_sampling():
    from sg3probe.analyzer import RunPlan
    from sg3probe_interfacegan.analyzer import InterFaceGAN

    plan = RunPlan(seeds=np.arange(100), scorer=_ChannelScorer())
    InterFaceGAN().prepare(InterFaceGAN.make_config({}), plan)  # 68 training samples, 20 per class
    with pytest.raises(ConfigError, match=r"no attribute\(s\) smiling; it has a, b, c"):
        InterFaceGAN().prepare(InterFaceGAN.make_config({"attributes": ["smiling"]}), plan)
    with pytest.raises(ConfigError, match="41 samples leave 9 for training after holding out 32"):
        InterFaceGAN().prepare(InterFaceGAN.make_config({}), replace(plan, seeds=np.arange(41)))
    with pytest.raises(ConfigError, match="ratio 0.01 give 0 per class"):
        InterFaceGAN().prepare(InterFaceGAN.make_config({"ratio": 0.01}), plan)
    with pytest.raises(ConfigError, match="needs a scorer"):
        InterFaceGAN().prepare(InterFaceGAN.make_config({}), replace(plan, scorer=None))
    with pytest.raises(ConfigError, match="got ratio -1.0"):
        InterFaceGAN.make_config({"ratio": -1})
    with pytest.raises(ConfigError, match="layer_ranges.fine: layers '8-x'"):
        InterFaceGAN.make_config({"layer_ranges": {"fine": "8-x"}})


def test_a_rerun_takes_each_finished_model_from_the_work_folder(tmp_path, monkeypatch):
    from sg3probe.analyzer import AnalysisContext, InMemorySampleSet
    from sg3probe_interfacegan import analyzer as module

    G, scorer = _RowsGenerator(), _ChannelScorer()
    w = torch.from_numpy(np.random.default_rng(1).standard_normal((200, 8)).astype(np.float32))
    ws = w[:, None].repeat(1, 6, 1)
    samples = InMemorySampleSet({"seeds": np.arange(200), "w": w.numpy(), "wplus": ws.numpy(),
                                 "scores": scorer.score(G.synthesis(ws))})
    settings = {"edit_samples": 20, "strengths": "-2:2:3", "layer_roles": ["aligned"], "layer_samples": 4,
                "single_layers": False, "grid_samples": 1, "unaligned_views": ["natural"]}
    ctx = AnalysisContext(generators={"aligned": G, "unaligned": G}, work_dir=tmp_path, scorer=scorer)
    both = {"aligned": samples, "unaligned": samples}
    first = module.InterFaceGAN().analyze(both, ctx, module.InterFaceGAN.make_config(settings))

    studied = []
    real_study = module._Study._study_role
    monkeypatch.setattr(module._Study, "_study_role", lambda self, role, s: (studied.append(role),
                                                                              real_study(self, role, s)))
    again = module.InterFaceGAN().analyze(both, ctx, module.InterFaceGAN.make_config(settings))
    assert studied == []  # both models taken from work/steps
    assert first.metrics == again.metrics and set(first.figures) == set(again.figures)
    for name, table in first.tables.items():
        pd.testing.assert_frame_equal(table, again.tables[name], check_dtype=False)
    for name, array in first.arrays.items():
        np.testing.assert_array_equal(array, again.arrays[name])

    (tmp_path / "steps" / "unaligned.json").unlink()  # as if interrupted during the unaligned model
    module.InterFaceGAN().analyze(both, ctx, module.InterFaceGAN.make_config(settings))
    assert studied == ["unaligned"]
    module.InterFaceGAN().analyze(both, ctx, module.InterFaceGAN.make_config({**settings, "strengths": "-3:3:3"}))
    assert studied == ["unaligned", "aligned", "unaligned"]  # other settings: studied again
