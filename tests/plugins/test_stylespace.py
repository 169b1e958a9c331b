"""StyleSpace: gradient maps against finite differences, resumable map files, the localization
rules and attribute relevance on synthetic inputs with known answers, and the analyzer end to end."""
import numpy as np
import pytest
import torch

from sg3probe.analyzer import AnalysisContext, InMemorySampleSet, RunPlan
from sg3probe.errors import ConfigError
from sg3probe.scorer import Attribute, Scorer, Segmentation
from sg3probe.style_channels import RunningMoments, style_layout
from sg3probe_stylespace.analyzer import StyleSpace
from sg3probe_stylespace.gradients import (auto_chunk, gradient_maps, pooled_render, read_gradient_maps,
                                          write_gradient_maps)
from sg3probe_stylespace.localization import (attribute_relevance, downsample_masks, localize,
                                              overlap_scores, ranked_channels, region_frequency, select_positives,
                                              top_regions)


def _ws(G, count, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return G.mapping(torch.randn(count, G.z_dim, generator=generator), None)


# ----- gradient maps -----------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["forward", "reverse"])
def test_gradient_maps_match_finite_differences(tiny, method):
    # The generator computes in float32 only: central differences with a step that keeps rounding
    # (~1e-7 / step) and curvature (~step^2) both near 1e-4 of the largest derivative.
    with torch.no_grad():
        styles = tiny.styles(_ws(tiny, 2))
    layout = style_layout(tiny)
    assert "L4_16_3" not in layout.names and layout.channels == 28  # ToRGB excluded
    maps = gradient_maps(tiny, styles, layout, pool=8, chunk=5, method=method)  # chunk does not divide
    assert maps.shape == (2, 28, 8, 8)
    step = 2e-3
    offsets = layout.offsets()
    for channel in (0, 9, 17, 27):
        layer = int(np.searchsorted(offsets, channel, side="right") - 1)
        name, index = layout.names[layer], channel - offsets[layer]
        shifted = [dict(styles), dict(styles)]
        for sign, copy in zip((1, -1), shifted):
            copy[name] = styles[name].double()
            copy[name][:, index] += sign * step
            copy[name] = copy[name].float()
        with torch.no_grad():
            actual_step = float(shifted[0][name][0, index] - shifted[1][name][0, index])
            derivative = (pooled_render(tiny, shifted[0], 8) - pooled_render(tiny, shifted[1], 8)) / actual_step
        expected = derivative.abs().mean(dim=1)  # [2, 8, 8]
        scale = float(expected.max())
        assert scale > 0
        torch.testing.assert_close(maps[:, channel], expected, rtol=2e-2, atol=2e-3 * scale)


def test_auto_chunk_follows_the_memory_budget_and_leaves_the_maps_unchanged(tiny):
    largest = max(spec.out_channels * (spec.in_size * spec.up_factor) ** 2 for spec in tiny.architecture.layers)
    per_image_mb = 10 * largest * 4 / 2**20  # one product of one image, as the module documents
    assert auto_chunk(tiny, 1, 7.5 * per_image_mb) == 7
    assert auto_chunk(tiny, 3, 7.5 * per_image_mb) == 2  # more images per batch, fewer products per pass
    assert auto_chunk(tiny, 1, 1e-6) == 1
    with torch.no_grad():
        styles = tiny.styles(_ws(tiny, 2))
    layout = style_layout(tiny)
    budgeted = gradient_maps(tiny, styles, layout, pool=8, memory_mb=7.5 * 2 * per_image_mb)  # chunk 7
    torch.testing.assert_close(budgeted, gradient_maps(tiny, styles, layout, pool=8, chunk=28), rtol=1e-4, atol=1e-6)


def test_maps_files_resume_and_skip_existing_chunks(tiny, tmp_path):
    layout = style_layout(tiny)
    ws = _ws(tiny, 3).numpy()
    paths = write_gradient_maps(tiny, ws, tmp_path, layout, pool=4, images_per_chunk=2, chunk=48)
    assert [p.name for p in paths] == ["maps_0000000_0000002.npy", "maps_0000002_0000003.npy"]
    maps = np.concatenate(list(read_gradient_maps(paths)))
    assert maps.shape == (3, 28, 4, 4) and maps.max() > 0
    # An interrupted run left the first chunk only: the second call must keep it and redo the rest.
    marker = np.full((2, 28, 4, 4), 7, dtype=np.float16)
    np.save(paths[0], marker)
    paths[1].unlink()
    again = write_gradient_maps(tiny, ws, tmp_path, layout, pool=4, images_per_chunk=2, chunk=48)
    assert np.all(np.load(again[0]) == 7)
    np.testing.assert_allclose(np.load(again[1]), maps[2:], rtol=1e-3)
    with pytest.raises(ValueError, match="divide"):
        gradient_maps(tiny, tiny.styles(_ws(tiny, 1)), layout, pool=5)


# ----- localization on synthetic inputs ----------------------------------------------------------

def test_masks_are_downsampled_by_majority_vote():
    masks = np.zeros((1, 4, 4), dtype=np.int64)
    masks[0, :2, :2] = [[1, 1], [1, 0]]  # 3 of 4 -> 1
    masks[0, :2, 2:] = [[2, 2], [1, 1]]  # tie -> the lower label, 1
    masks[0, 2:, 2:] = 2
    np.testing.assert_array_equal(downsample_masks(masks, 2, 3)[0], [[1, 1], [0, 2]])
    with pytest.raises(ValueError, match="labels"):
        downsample_masks(masks + 5, 2, 3)


def _synthetic_world(images=20, size=8, seed=0):
    """Regions: 0 background, 1 a small 'eye' block, 2 a larger 'hair' band, 3 absent in half the
    images. Channel 0 is active on the eye, channel 1 on the hair, channel 2 everywhere (noise),
    channel 3 on the eye in every other image, else on the hair (a 50/50 pair)."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((images, size, size), dtype=np.int64)
    masks[:, 2:4, 2:4] = 1
    masks[:, 5:, :] = 2
    masks[::2, 0, 6:] = 3
    maps = rng.uniform(0, 0.1, (images, 4, size, size))
    maps[:, 0] += 1.0 * (masks == 1)
    maps[:, 1] += 1.0 * (masks == 2)
    maps[:, 2] = rng.uniform(0, 1, (images, size, size))
    pick = np.arange(images) % 2 == 0
    maps[:, 3] += np.where(pick[:, None, None], masks == 1, masks == 2)
    return maps, masks


def test_overlap_score_is_n_over_o_squared():
    maps, masks = _synthetic_world(images=1)
    scores = overlap_scores(maps, masks, 5)
    assert scores[0, 0, 1] == pytest.approx(4 / 16)  # all 4 eye pixels are the 4 hottest: n = o = 4
    assert scores[0, 1, 2] == pytest.approx(24 / 24 ** 2)
    assert np.isnan(scores[0, :, 4]).all()  # region 4 never occurs: NaN, not 0
    assert not np.isnan(scores[0, :, 3]).any()  # image 0 has region 3


def test_frequency_and_localization_rule_find_the_planted_channels():
    maps, masks = _synthetic_world()
    scores = overlap_scores(maps, masks, 5)
    present = np.stack([(masks == r).any(axis=(1, 2)) for r in range(5)], axis=1)
    top = top_regions(scores)
    assert (top[:, 0] == 1).all() and (top[:, 1] == 2).all()
    frac = region_frequency(top, present)
    assert frac.shape == (4, 5) and np.isnan(frac[:, 4]).all()
    assert frac[0, 1] == 1.0 and frac[1, 2] == 1.0
    found = localize(frac, 0.5, 0.25, max_regions=2)
    assert found[0].regions == (1,) and found[1].regions == (2,)
    assert found[3].regions == (1, 2)  # neither alone passes the margin, the pair does
    assert found[3].share == pytest.approx(1.0)
    assert list(ranked_channels(found, frac, 1)) == [0, 3]  # the single-region channel first
    tied = [found[0], found[0], found[3]]
    strength = np.array([[0, 0.1], [0, 0.9], [0, 0.5]])
    assert list(ranked_channels(tied, frac[[0, 0, 3], :2], 1, strength)) == [1, 0, 2]  # ties: stronger first
    assert localize(frac, 0.5, 0.25, max_regions=1)[3].regions == ()


def test_localization_rule_thresholds_are_strict():
    frac = np.array([[0.5, 0.0], [0.6, 0.35], [0.6, 0.34], [np.nan, 0.9]])
    found = localize(frac, 0.5, 0.25, max_regions=1)
    assert [f.regions for f in found] == [(), (), (0,), (1,)]


def test_running_moments_match_numpy_over_chunks():
    rows = np.random.default_rng(1).normal(3, 2, (1001, 5))
    moments = RunningMoments()
    for start in range(0, 1001, 300):
        moments.update(rows[start:start + 300])
    np.testing.assert_allclose(moments.mean, rows.mean(axis=0))
    np.testing.assert_allclose(moments.std, rows.std(axis=0))


def test_attribute_relevance_ranks_the_planted_channel_first():
    rng = np.random.default_rng(2)
    styles = rng.normal(0, 1, (5000, 20))
    scores = styles[:, 7] * 2 + rng.normal(0, 0.1, 5000)  # attribute driven by channel 7
    positives = select_positives(scores, count=10, candidates=200, rng=rng)
    assert len(positives) == 10 and np.all(scores[positives] > np.sort(scores)[-201])
    theta = attribute_relevance(styles[positives], styles.mean(axis=0), styles.std(axis=0))
    assert np.argmax(theta) == 7
    negatives = select_positives(scores, count=10, candidates=10, sign=-1.0)
    np.testing.assert_array_equal(negatives, np.sort(np.argsort(scores)[:10]))


# ----- the analyzer ------------------------------------------------------------------------------

class HalvesScorer(Scorer):
    """Segments by image position (0 left, 1 top-right, 2 bottom-right); scores mean brightness."""

    name = "halves"
    attributes = (Attribute("bright", "continuous", (-1, 1)),)

    def score(self, images):
        return {"bright": images.mean(dim=(1, 2, 3)).numpy()}

    def segment(self, images):
        size = images.shape[-1]
        masks = np.zeros((len(images), size, size), dtype=np.int64)
        masks[:, : size // 2, size // 2:] = 1
        masks[:, size // 2:, size // 2:] = 2
        return Segmentation(masks, ("left", "top_right", "bottom_right"))


def _halves_samples(tiny, count=30):
    ws = _ws(tiny, count, seed=3)
    with torch.no_grad():
        styles = tiny.styles(ws)
        scores = HalvesScorer().score(tiny.synthesis(ws))
    return InMemorySampleSet({"seeds": np.arange(count), "wplus": ws.numpy(), "w": ws[:, 0].numpy(),
                              "s": {k: v.numpy() for k, v in styles.items()}, "scores": scores})


def _run_halves(tiny, work_dir, **options):
    cfg = StyleSpace.make_config({"gradient_images": 4, "pool": 8, "edit_samples": 6, "grid_samples": 2,
                                  "positives": 4, "candidates": 10, "images_per_chunk": 2, **options})
    ctx = AnalysisContext(generators={"aligned": tiny}, work_dir=work_dir, scorer=HalvesScorer())
    return StyleSpace().analyze({"aligned": _halves_samples(tiny)}, ctx, cfg)


def test_top_channel_is_the_most_local_candidate_on_the_gradient_images(tiny, tmp_path):
    first = _run_halves(tiny, tmp_path, edit_candidates=1).tables["locality"].set_index("region")
    best = _run_halves(tiny, tmp_path, edit_candidates=28).tables["locality"].set_index("region")
    assert (first["gradient_rank"] == 1).all() and (first["candidates"] == 1).all()
    # Trying more candidates can only find an edit at least as local on the selection images.
    assert (best["selection_locality"] >= first["selection_locality"] - 1e-3).all()
    assert (best["selection_locality"] > first["selection_locality"] + 1e-3).any()
    assert (best.loc[best["gradient_rank"] == 1, "channel"] == first.loc[best["gradient_rank"] == 1, "channel"]).all()


def test_analyzer_runs_end_to_end_and_resumes(tiny, tmp_path):
    result = _run_halves(tiny, tmp_path)
    assert result.metrics["aligned"]["channels"] == 28
    locality = result.tables["locality"]
    assert set(locality["region"]) == {"left", "top_right", "bottom_right"}
    assert locality["locality"].between(0, 1).all()
    assert result.tables["localized channels per layer (aligned)"].shape == (4, 3)
    assert "layer x region (aligned)" in result.figures and "edit left (aligned)" in result.figures
    assert set(result.tables["attributes"]["direction"]) == {"high", "low"}
    w_vs_s = result.tables["w_vs_s"]  # the brightness boundary's W edit against each region's best channel
    assert set(w_vs_s["region"]) == {"left", "top_right", "bottom_right"}
    assert w_vs_s["W locality"].between(0, 1).all() and (w_vs_s["best W edit (attribute)"] == "bright").all()
    np.testing.assert_allclose(w_vs_s["S - W"], w_vs_s["S locality"] - w_vs_s["W locality"], atol=2e-3)
    assert result.arrays["s_std_aligned"].shape == (28,)
    files = sorted((tmp_path / "aligned" / "gradient_maps").glob("maps_*.npy"))
    assert len(files) == 2
    stamps = [f.stat().st_mtime_ns for f in files]
    _run_halves(tiny, tmp_path)  # resumes: the map files are not rewritten
    assert [f.stat().st_mtime_ns for f in files] == stamps


def test_config_and_scorer_errors():
    with pytest.raises(ConfigError, match="method"):
        StyleSpace.make_config({"method": "sideways"})

    class NoSegment(Scorer):
        name = "plain"

    ctx = AnalysisContext(generators={}, work_dir=".", scorer=NoSegment())
    with pytest.raises(ConfigError, match="segment"):
        StyleSpace().analyze({}, ctx, StyleSpace.make_config({}))


def test_a_scorer_that_cannot_segment_fails_before_sampling():
    class Plain(Scorer):
        name = "plain"
        attributes = (Attribute("bright", "binary"),)

        def score(self, images):
            return {"bright": images.mean(dim=(1, 2, 3)).numpy()}

    with pytest.raises(ConfigError, match="needs a scorer that can segment"):
        StyleSpace().prepare(StyleSpace.make_config({}), RunPlan(seeds=np.arange(10), scorer=Plain()))
    Plain.segment = lambda self, images: None  # declares the capability; prepare does not call it
    with pytest.raises(ConfigError, match="10 samples, but gradient_images \\+ edit_samples"):
        StyleSpace().prepare(StyleSpace.make_config({}), RunPlan(seeds=np.arange(10), scorer=Plain()))
