"""StyleCLIP: global directions with known answers (a colour generator and a colour text model),
batched probes against a plain loop, channel restoration, the resumable cache, the latent mapper
(training, resumption, switched-off groups), the analyzer end to end and `sg3probe edit --text`."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from sg3probe.analyzer import AnalysisContext, InMemorySampleSet, RunPlan, check_analyzer_class
from sg3probe.errors import CheckpointError, ConfigError
from sg3probe.scorer import Attribute, Scorer
from sg3probe.store.seeds import parse_seeds
from sg3probe.textimage import TextImageScorer
from sg3probe_styleclip.analyzer import StyleCLIP
from sg3probe_styleclip.evaluation import decision_thresholds, side_effects, target_rates
from sg3probe_styleclip.global_directions import (ProbeSettings, channel_directions, channel_image_directions,
                                                  flat_styles, full_index, probe_batch, seed_ws, style_step,
                                                  text_direction, text_edit_direction)
from sg3probe_styleclip.mapper import LevelsMapper, MapperSettings, level_slices, load_mapper, train_mapper
from sg3probe_styleclip.prompts import parse_target
from sg3probe_styleclip.strength import calibrate_alpha
from sg3probe.style_channels import style_layout


# ----- stand-ins with known answers ---------------------------------------------------------------

WORDS = {"red": (2.0, 0.0, 0.0), "green": (0.0, 2.0, 0.0), "blue": (0.0, 0.0, 2.0)}


class ColourClip(TextImageScorer):
    """Images embed as their unit mean colour (shifted to be positive); a text as (1, 1, 1) plus a
    vector per colour word it names, normalised. So "a red face" - "a face" points to more red."""

    name = "colourclip"
    embedding_dim = 3

    def preprocess(self, images):
        return images

    def encode_image(self, images):
        return F.normalize(self.preprocess(images).mean(dim=(2, 3)) + 1.5, dim=1)

    def encode_text(self, texts):
        rows = [torch.tensor([1.0, 1.0, 1.0]) + sum((torch.tensor(WORDS[w]) for w in text.split() if w in WORDS),
                                                     torch.zeros(3)) for text in texts]
        return F.normalize(torch.stack(rows), dim=1)


# Channel effects of ColourGenerator: two add red, one green, one blue, one nothing, one removes red.
COLOURS = torch.tensor([[1.0, 0, 0], [0.5, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0, 0, 0], [-1.0, 0, 0]])


class ColourGenerator(torch.nn.Module):
    """A stand-in generator whose S channel c paints the whole image by s_c * COLOURS[c] / 10.

    S: 'input' [4] (unused by the image), L0_4_6 [6] = ws[:, 1, :6], ToRGB L1_4_3 [3] = ws[:, 1, :3]."""

    z_dim = w_dim = 6
    num_ws = 2
    architecture = SimpleNamespace(layers=[SimpleNamespace(name="L0_4_6", is_torgb=False, style_dim=6),
                                           SimpleNamespace(name="L1_4_3", is_torgb=True, style_dim=3)])

    def __init__(self):
        super().__init__()
        self.register_buffer("w_avg", torch.zeros(6))

    @property
    def device(self):
        return self.w_avg.device

    def mapping(self, z, c, truncation_psi=1.0, truncation_cutoff=None):
        ws = z[:, None].repeat(1, 2, 1)
        rows = slice(None) if truncation_cutoff is None else slice(0, truncation_cutoff)
        ws[:, rows] = self.w_avg + truncation_psi * (ws[:, rows] - self.w_avg)
        return ws

    def styles(self, ws):
        return OrderedDict(input=ws[:, 0, :4], L0_4_6=ws[:, 1, :6], L1_4_3=ws[:, 1, :3])

    def synthesis(self, ws=None, styles=None, transform=None):
        styles = self.styles(ws) if styles is None else styles
        colour = (styles["L0_4_6"] @ COLOURS.to(styles["L0_4_6"].dtype)) / 10  # [B, 3]
        return torch.tanh(colour)[:, :, None, None].expand(-1, 3, 4, 4)


SMALL = ProbeSettings(probe_seeds="0-2", stats_seeds="0-199", channels_per_chunk=8)


# ----- global directions --------------------------------------------------------------------------

def test_global_direction_has_the_known_channels_and_signs(tmp_path):
    G, clip = ColourGenerator(), ColourClip()
    directions = channel_directions(G, clip, ProbeSettings(probe_seeds="0-3", stats_seeds="0-499"),
                                    cache_dir=tmp_path)
    assert directions.layout.names == ("L0_4_6",)  # ToRGB never probed, 'input' masked
    np.testing.assert_array_equal(directions.positions, np.arange(4, 10))
    assert np.all(directions.directions[4] == 0)  # the channel that paints nothing
    np.testing.assert_allclose(np.linalg.norm(directions.directions[[0, 1, 2, 3, 5]], axis=1), 1, rtol=1e-5)
    delta_t = text_direction(clip, "a red face", "a face")
    relevance = directions.relevance(delta_t)
    assert relevance[0] > 0.8 and relevance[1] > 0.8 and relevance[5] < -0.8  # red up, red up, red down
    assert abs(relevance[2]) < 0.6 and abs(relevance[3]) < 0.6 and relevance[4] == 0
    direction = directions.style_direction(delta_t, beta=0.7)
    assert direction.space == "s" and direction.vector.shape == (4 + 6 + 3,)
    step = direction.vector[4:10]
    assert set(np.flatnonzero(step)) == {0, 1, 5}
    assert np.all(direction.vector[:4] == 0) and np.all(direction.vector[10:] == 0)  # input and ToRGB untouched
    expected = relevance / np.abs(relevance).max() * directions.std
    np.testing.assert_allclose(step[[0, 1, 5]], expected[[0, 1, 5]])
    top = np.argmax(np.abs(relevance))
    assert np.isclose(abs(step[top]), directions.std[top])  # the most relevant channel moves by sigma_c
    # The edit makes the images redder, as the text asked.
    ws = seed_ws(G, list(range(50, 58)), 1.0, None)
    styles = G.styles(ws)
    from sg3probe.editing import edit_styles
    before = clip.encode_image(G.synthesis(styles=styles))
    after = clip.encode_image(G.synthesis(styles=edit_styles(styles, direction.vector, 4.0)))
    target = clip.encode_text(["a red face"])[0]
    assert torch.all(after @ target > before @ target)


def test_style_step_thresholds_normalises_and_scales():
    step = style_step(np.array([0.5, -0.2, 0.1, -0.05]), np.array([2.0, 3.0, 4.0, 5.0]), beta=0.1)
    np.testing.assert_allclose(step, [2.0, -0.4 * 3.0, 0.2 * 4.0, 0.0])
    assert not style_step(np.array([0.05, -0.01]), np.ones(2), beta=0.1).any()  # nothing kept: no edit


def test_input_channels_are_probed_only_when_asked(tmp_path):
    G, clip = ColourGenerator(), ColourClip()
    with_input = channel_directions(G, clip, ProbeSettings(probe_seeds="0", stats_seeds="0-99", include_input=True),
                                    cache_dir=tmp_path)
    assert with_input.layout.names == ("input", "L0_4_6")
    np.testing.assert_array_equal(with_input.positions, np.arange(10))
    assert np.all(with_input.directions[:4] == 0)  # this generator's image ignores 'input'


def test_probe_rows_change_one_channel_and_leave_the_styles_as_they_were(tiny):
    ws = seed_ws(tiny, [0, 1, 2], 0.7, None)
    base = flat_styles(tiny, ws)
    kept = base.clone()
    images, positions = torch.tensor([0, 2, 1, 1]), torch.tensor([5, 5, 30, 7])
    values = torch.tensor([9.0, -9.0, 3.0, 4.0])
    rows = probe_batch(base, images, positions, values)
    assert torch.equal(base, kept)
    for row, (image, position, value) in enumerate(zip(images, positions, values)):
        differs = torch.nonzero(rows[row] != base[image]).flatten()
        assert differs.tolist() == [int(position)] and rows[row, position] == value
    layout = style_layout(tiny)
    mean, std = base.mean(0).double().numpy(), base.std(0).double().numpy() + 0.1
    channel_image_directions(tiny, _LinearClip(), base, full_index(tiny, layout)[:6], mean, std, k=5.0, batch_size=4)
    assert torch.equal(base, kept)  # probing never wrote into the images' styles


class _LinearClip(ColourClip):
    """A fixed random projection of 4x4-pooled colours (48 numbers) to 8 dimensions."""

    name = "linearclip"
    projection = torch.randn(48, 8, generator=torch.Generator().manual_seed(3))

    def encode_image(self, images):
        return F.normalize(F.adaptive_avg_pool2d(images, 4).flatten(1) @ self.projection, dim=1)

    def encode_text(self, texts):
        return F.pad(super().encode_text(texts), (0, 5))


def test_batched_probes_equal_a_plain_loop_with_restore(tiny):
    clip = _LinearClip()
    ws = seed_ws(tiny, [3, 4], 0.7, None)
    layout = style_layout(tiny)
    positions = full_index(tiny, layout)[[0, 9, 27]]
    base = flat_styles(tiny, ws)
    mean, std = base.mean(0).double().numpy(), base.std(0).double().numpy() + 0.05
    batched = channel_image_directions(tiny, clip, base, positions, mean, std, k=5.0, batch_size=5)
    styles = tiny.styles(ws)  # edited in place below, and restored after each probe
    names = list(styles)
    offsets = np.cumsum([0] + [styles[n].shape[1] for n in names])
    for row, position in enumerate(positions):
        layer = int(np.searchsorted(offsets, position, side="right") - 1)
        name, channel = names[layer], int(position - offsets[layer])
        saved = styles[name][:, channel].clone()
        embeddings = []
        for sign in (1, -1):
            styles[name][:, channel] = float(mean[position] + sign * 5.0 * std[position])
            embeddings.append(clip.encode_image(tiny.synthesis(styles=styles)))
        styles[name][:, channel] = saved
        expected = F.normalize(F.normalize(embeddings[0] - embeddings[1], dim=1).mean(0), dim=0)
        np.testing.assert_allclose(batched[row], expected.numpy(), atol=1e-5)
    assert torch.equal(flat_styles(tiny, ws), base)


def test_interrupted_preprocessing_resumes_without_recomputing_finished_chunks(tiny, tmp_path):
    clip = _LinearClip()
    first = channel_directions(tiny, clip, SMALL, cache_dir=tmp_path / "a", max_chunks=2)
    assert first.computed_chunks == 2 and np.isnan(first.directions[16:]).all()
    files = sorted(first.folder.glob("channels_*.npy"))
    assert [f.name for f in files] == ["channels_000000_000008.npy", "channels_000008_000016.npy"]
    stamps = [f.stat().st_mtime_ns for f in files]
    resumed = channel_directions(tiny, clip, SMALL, cache_dir=tmp_path / "a")
    assert resumed.computed_chunks == 2  # 28 channels in chunks of 8: the two left
    assert [f.stat().st_mtime_ns for f in files] == stamps
    fresh = channel_directions(tiny, clip, SMALL, cache_dir=tmp_path / "b")
    np.testing.assert_allclose(resumed.directions, fresh.directions, atol=1e-6)
    again = channel_directions(tiny, clip, SMALL, cache_dir=tmp_path / "a")
    assert again.computed_chunks == 0 and again.folder == resumed.folder
    other = channel_directions(tiny, clip, ProbeSettings(probe_seeds="0-1", stats_seeds="0-199", channels_per_chunk=8),
                               cache_dir=tmp_path / "a", max_chunks=0)
    assert other.folder != resumed.folder  # other settings, another cache entry


def test_text_edit_direction_refuses_a_beta_no_channel_reaches(tmp_path):
    G, clip = ColourGenerator(), ColourClip()
    settings = ProbeSettings(probe_seeds="0-1", stats_seeds="0-99")
    with pytest.raises(ConfigError, match="lower --beta"):
        text_edit_direction(G, clip, "a red face", "a face", beta=1.01, settings=settings, cache_dir=tmp_path)
    direction = text_edit_direction(G, clip, "a red face", "a face", beta=0.7, settings=settings, cache_dir=tmp_path)
    assert direction.metadata["text"] == "a red face" and direction.metadata["channels"] == 3


class _StrictClip(ColourClip):
    global_beta = 0.7  # its own default threshold


def test_text_edit_direction_takes_the_text_models_beta_by_default(tmp_path):
    G, settings = ColourGenerator(), ProbeSettings(probe_seeds="0-1", stats_seeds="0-99")
    loose = text_edit_direction(G, ColourClip(), "a red face", "a face", settings=settings, cache_dir=tmp_path)
    strict = text_edit_direction(G, _StrictClip(), "a red face", "a face", settings=settings, cache_dir=tmp_path)
    assert loose.metadata["beta"] == ColourClip.global_beta == 0.13 and strict.metadata["beta"] == 0.7
    assert strict.metadata["channels"] == 3 < loose.metadata["channels"]  # 0.7 drops the weakly relevant ones


# ----- alpha calibration --------------------------------------------------------------------------

def _colour_similarity(ws: torch.Tensor, step: np.ndarray, alpha: float, prompt: np.ndarray) -> np.ndarray:
    """cos(E(G(s + alpha step)), prompt) for ColourGenerator and ColourClip, from their definitions."""
    s = ws[:, 1, :6].numpy().astype(np.float64) + alpha * step[4:10]
    colour = np.tanh(s @ COLOURS.numpy().astype(np.float64) / 10) + 1.5
    return (colour / np.linalg.norm(colour, axis=1, keepdims=True)) @ prompt


def test_calibrated_alpha_is_the_first_on_the_grid_whose_gain_reaches_the_level(tmp_path):
    G, clip = ColourGenerator(), ColourClip()
    directions = channel_directions(G, clip, SMALL, cache_dir=tmp_path)
    step = directions.style_direction(text_direction(clip, "a red face", "a face"), beta=0.5).vector
    prompt = F.normalize(clip.encode_text(["a red face"]).double(), dim=1)[0].numpy()
    ws = seed_ws(G, list(range(300, 340)), 1.0, None)
    natural = _colour_similarity(ws, step, 0.0, prompt)
    for sigmas in (0.5, 1.0, 2.0):
        found = calibrate_alpha(G, clip, step, prompt, ws, sigmas=sigmas, alpha_step=0.25, alpha_max=20)
        gains = [np.mean(_colour_similarity(ws, step, a, prompt) - natural) / natural.std()
                 for a in 0.25 * np.arange(1, 81)]
        expected = 0.25 * (1 + next(i for i, g in enumerate(gains) if g >= sigmas))
        assert found.reached and found.alpha == pytest.approx(expected)
        np.testing.assert_allclose(found.gains, gains[:len(found.gains)], rtol=1e-4)
        assert found.natural_std == pytest.approx(natural.std(), rel=1e-4)
    assert calibrate_alpha(G, clip, step, prompt, ws, sigmas=2.0).alpha > calibrate_alpha(G, clip, step, prompt,
                                                                                           ws, sigmas=0.5).alpha


def test_calibration_that_never_reaches_takes_the_largest_gain_and_says_so():
    G, clip = ColourGenerator(), ColourClip()
    ws = seed_ws(G, list(range(300, 320)), 1.0, None)
    prompt = F.normalize(clip.encode_text(["a red face"]), dim=1)[0].numpy()
    step = np.zeros(13)
    step[4 + 4] = 1.0  # the channel that paints nothing: no alpha changes the similarity
    step[4 + 2] = -0.3  # less green: a little redder, so the gain grows slowly and stays small
    found = calibrate_alpha(G, clip, step, prompt, ws, sigmas=50.0, alpha_step=1.0, alpha_max=6)
    assert not found.reached and len(found.alphas) == 6
    assert found.alpha == found.alphas[np.argmax(found.gains)] and "level 50 is not reached" in found.describe()
    with pytest.raises(ConfigError, match="at least 2"):
        calibrate_alpha(G, clip, step, prompt, ws[:1])
    with pytest.raises(ConfigError, match="alpha_step"):
        calibrate_alpha(G, clip, step, prompt, ws, alpha_step=0)


# ----- the mapper ---------------------------------------------------------------------------------

def test_level_slices_and_switched_off_groups():
    assert level_slices(16) == {"coarse": slice(0, 5), "medium": slice(5, 8), "fine": slice(8, 16)}
    parts = level_slices(6)
    assert parts["coarse"].start == 0 and parts["fine"].stop == 6
    assert parts["coarse"].stop <= parts["medium"].start <= parts["fine"].start
    torch.manual_seed(0)
    mapper = LevelsMapper(8, 16, groups=("fine",))
    ws = torch.randn(3, 16, 8)
    delta = mapper(ws)
    assert torch.all(delta[:, :8] == 0) and delta[:, 8:].abs().sum() > 0
    assert torch.equal(mapper.edit(ws)[:, :8], ws[:, :8])
    with pytest.raises(ConfigError, match="coarse"):
        LevelsMapper(8, 16, groups=("middle",))


def test_the_trained_mapper_is_the_moving_average_of_the_training_weights(tmp_path):
    G, clip = ColourGenerator(), ColourClip()
    latents = seed_ws(G, list(range(32)), 1.0, None)
    target = clip.encode_text(["a red face"])[0].numpy()
    settings = MapperSettings(steps=12, batch_size=4, learning_rate=5.0, lambda_l2=0.0, lambda_id=0.0, ema_decay=0.6)
    torch.manual_seed(settings.seed)
    expected = {k: v.clone() for k, v in LevelsMapper(G.w_dim, G.num_ws).state_dict().items()}  # the initial weights
    for step in range(1, settings.steps + 1):  # one step a call: read the weights the optimiser left
        train_mapper(G, clip, target, latents, settings, tmp_path / "steps", stop_after=1)
        weights = torch.load(tmp_path / "steps" / "mapper.pt", weights_only=True)["training_state_dict"]
        decay = min(0.6, (1 + step) / (10 + step))
        expected = {k: decay * expected[k] + (1 - decay) * weights[k] for k in expected}
    averaged, _ = load_mapper(tmp_path / "steps" / "mapper.pt")
    for name, value in averaged.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(averaged.state_dict()["mappers.fine.layers.0.weight"],
                              weights["mappers.fine.layers.0.weight"])  # the average is not the last weights
    last = train_mapper(G, clip, target, latents, replace(settings, ema_decay=0.0), tmp_path / "last").mapper
    for name, value in last.state_dict().items():  # ema_decay 0: the last weights, as trained
        torch.testing.assert_close(value, weights[name])
    # A checkpoint written before averaging existed (one weight set, no ema_decay setting) trains on.
    old = torch.load(tmp_path / "last" / "mapper.pt", weights_only=True)
    del old["training_state_dict"], old["meta"]["settings"]["ema_decay"]
    torch.save(old, tmp_path / "last" / "mapper.pt")
    resumed = train_mapper(G, clip, target, latents, replace(settings, ema_decay=0.0, steps=14), tmp_path / "last")
    assert resumed.resumed_from == 12 and len(resumed.losses) == 14
    with pytest.raises(ConfigError, match="ema_decay"):
        replace(settings, ema_decay=1.0).check()


def test_mapper_training_lowers_the_loss_and_resumes_exactly(tmp_path):
    G, clip = ColourGenerator(), ColourClip()
    latents = seed_ws(G, list(range(64)), 1.0, None)
    target = clip.encode_text(["a red face"])[0].numpy()
    settings = MapperSettings(steps=40, batch_size=8, learning_rate=5.0, lambda_l2=0.0, lambda_id=0.0,
                              checkpoint_every=7)
    whole = train_mapper(G, clip, target, latents, settings, tmp_path / "whole")
    assert whole.losses.shape == (40, 4)
    assert whole.losses[-5:, 0].mean() < whole.losses[:5, 0].mean() / 2
    torch.manual_seed(settings.seed)
    untrained = LevelsMapper(G.w_dim, G.num_ws)  # the same initial weights as training's
    ws = latents[:32]
    with torch.no_grad():
        before = (clip.encode_image(G.synthesis(untrained.edit(ws))) @ torch.from_numpy(target)).mean()
        after = (clip.encode_image(G.synthesis(whole.mapper.edit(ws))) @ torch.from_numpy(target)).mean()
    assert after > before + 0.05
    part = train_mapper(G, clip, target, latents, settings, tmp_path / "part", stop_after=12)
    assert len(part.losses) == 12
    rest = train_mapper(G, clip, target, latents, settings, tmp_path / "part")
    assert rest.resumed_from == 12 and len(rest.losses) == 40
    np.testing.assert_allclose(rest.losses, whole.losses, rtol=1e-5, atol=1e-7)
    loaded, _ = load_mapper(tmp_path / "part" / "mapper.pt")
    torch.testing.assert_close(loaded.edit(ws), whole.mapper.edit(ws))
    with pytest.raises(CheckpointError, match="other settings"):
        train_mapper(G, clip, target, latents, MapperSettings(steps=50), tmp_path / "part")
    # Asking a finished mapper for more steps trains on, as one longer training would have.
    longer = replace(settings, steps=55)
    extended = train_mapper(G, clip, target, latents, longer, tmp_path / "part")
    assert extended.resumed_from == 40 and len(extended.losses) == 55
    np.testing.assert_allclose(extended.losses, train_mapper(G, clip, target, latents, longer,
                                                             tmp_path / "longer").losses, rtol=1e-5, atol=1e-7)
    with pytest.raises(CheckpointError, match="55 steps, more than the 40 asked"):
        train_mapper(G, clip, target, latents, settings, tmp_path / "part")


# ----- measurements -------------------------------------------------------------------------------

def test_targets_and_rates():
    attributes = {"smiling": Attribute("smiling", "binary"), "hair": Attribute("hair", "continuous", (0, 1))}
    smile = parse_target("smiling+", attributes)
    rates = target_rates(smile, np.array([-1.0, -2, 3, -1]), np.array([1.0, -1, 2, 2]))
    assert rates["target_rate"] == pytest.approx(2 / 3) and rates["at_target"] == 0.75 and rates["eligible"] == 3
    assert parse_target("hair-", attributes).reached(np.array([0.4, 0.6])).tolist() == [True, False]
    assert parse_target("hair=0.2..0.4", attributes).reached(np.array([0.3, 0.5])).tolist() == [True, False]
    assert parse_target("", attributes) is None
    with pytest.raises(ConfigError, match="no attribute"):
        parse_target("glasses+", attributes)
    with pytest.raises(ConfigError, match="write"):
        parse_target("smiling up", attributes)
    thresholds = decision_thresholds(attributes.values(), {})
    assert thresholds == {"smiling": 0.0, "hair": 0.5}
    effects = side_effects("smiling", {"smiling": np.zeros(4), "hair": np.array([0.1, 0.45, 0.9, 0.6])},
                           {"smiling": np.ones(4), "hair": np.array([0.1, 0.9, 0.55, 0.4])}, thresholds,
                           {"smiling": 1.0, "hair": 0.3}, change_std=1.0)
    assert set(effects) == {"hair"}  # the target is no side effect
    assert effects["hair"].flip_rate == 0.5  # 0.45 -> 0.9 and 0.6 -> 0.4 cross the middle of the range
    assert effects["hair"].move_rate == 0.5  # 0.45 -> 0.9 and 0.9 -> 0.55 move by >= 1 natural std
    unranged = decision_thresholds([Attribute("width", "continuous")], {"width": np.array([1.0, 2.0, 7.0])})
    assert unranged == {"width": 2.0}  # no declared range: the median of the scores


# ----- the analyzer -------------------------------------------------------------------------------

class _RedScorer(Scorer):
    name = "redness"
    attributes = (Attribute("red", "binary"), Attribute("bright", "continuous", (-1, 1)))

    def score(self, images):
        means = images.mean(dim=(2, 3)).numpy()
        return {"red": (means[:, 0] - means[:, 1:].mean(axis=1)) * 20, "bright": means.mean(axis=1)}


def _red_samples(tiny, count: int):
    """Samples of seeds 100.. of `tiny` (W+ and _RedScorer scores) and the scorer."""
    ws = seed_ws(tiny, list(range(100, 100 + count)), 1.0, None)
    scorer = _RedScorer()
    return InMemorySampleSet({"seeds": np.arange(100, 100 + count), "wplus": ws.numpy(),
                              "scores": scorer.score(tiny.synthesis(ws))}), scorer


def test_analyzer_runs_end_to_end(tiny, tmp_path):
    check_analyzer_class(StyleCLIP)
    samples, scorer = _red_samples(tiny, 20)
    cfg = StyleCLIP.make_config({
        "prompts": {"a red face": "red+", "a blue face": ""}, "identity": "pixels",  # beta: the model's
        "probe_seeds": "0-1", "stats_seeds": "0-99", "channels_per_chunk": 16, "cache_dir": str(tmp_path / "cache"),
        "mapper_steps": 4, "mapper_batch": 2, "mapper_latents": 8, "eval_samples": 6, "grid_samples": 2,
        "sweep_betas": "0.05,0.1", "sweep_alphas": "2,4", "sweep_samples": 4, "mapper_roles": ["aligned"],
        "alpha_sigmas": 0.5, "calibration_samples": 6})
    ctx = AnalysisContext(generators={"aligned": tiny, "unaligned": tiny}, work_dir=tmp_path / "work", scorer=scorer)
    clip = ColourClip()
    clip.global_beta = 0.05
    result = StyleCLIP(text_model=clip).analyze({"aligned": samples, "unaligned": samples}, ctx, cfg)
    assert (result.metrics["beta"], result.metrics["alpha"]) == (0.05, "calibrated")
    edits = result.tables["edits"]
    calibration = result.tables["alpha calibration"].set_index(["model", "prompt"])
    assert len(calibration) == 4
    red, blue = calibration.xs("a red face", level=1), calibration.xs("a blue face", level=1)
    assert red["reached"].all() and (red["gain_sigmas"] >= 0.5).all()
    assert not blue["reached"].any() and "did not reach its level for a blue face (aligned)" in result.summary
    for row in edits[edits["method"] == "global (S)"].itertuples():  # each global edit at its calibrated alpha
        assert row.alpha == calibration.loc[(row.model, row.prompt), "alpha"] > 0
        assert result.metrics["edits"][row.model][row.prompt]["global (S)"]["alpha"] == row.alpha
    assert edits[edits["method"] == "mapper (W+)"]["alpha"].isna().all()
    assert set(zip(edits["model"], edits["method"])) == {("aligned", "global (S)"), ("aligned", "mapper (W+)"),
                                                         ("unaligned", "global (S)")}
    red = edits[edits["prompt"] == "a red face"]
    assert red["target_rate"].dropna().between(0, 1).all() and red["worst_side_effect"].eq("bright").all()
    assert (red[red["method"] == "global (S)"]["similarity_gain"] > 0).all()  # the edit moves towards the text
    assert edits[edits["prompt"] == "a blue face"]["target"].eq("").all()
    assert len(result.tables["sweep"]) == 4 and set(result.tables["sweep"]["model"]) == {"aligned"}
    assert {"edits: a red face", "beta x alpha", "side effects", "target vs side effects",
            "mapper losses"} <= set(result.figures)
    assert (tmp_path / "work" / "aligned" / "mappers" / "a-red-face" / "mapper.pt").exists()
    style_size = sum(v.shape[1] for v in tiny.styles(seed_ws(tiny, [100], 1.0, None)).values())
    assert result.arrays["direction_aligned_a-red-face"].shape == (style_size,)
    assert len(list((tmp_path / "cache").rglob("channels_*.npy"))) == 2  # one cache entry, shared by both roles
    assert set(result.metrics["edits"]["aligned"]["a red face"]) == {"global (S)", "mapper (W+)"}


def test_too_few_samples_to_calibrate_alpha_stops_only_a_run_with_global_edits(tiny, tmp_path):
    count = 8
    samples, scorer = _red_samples(tiny, count)
    ctx = AnalysisContext(generators={"aligned": tiny}, work_dir=tmp_path / "work", scorer=scorer)
    settings = {"prompts": {"a red face": "red+"}, "identity": "pixels", "probe_seeds": "0-1", "stats_seeds": "0-99",
                "cache_dir": str(tmp_path / "cache"), "eval_samples": count - 1, "grid_samples": 0,
                "mapper_steps": 2, "mapper_batch": 1, "sweep_roles": []}
    with pytest.raises(ConfigError, match="too few to calibrate alpha"):
        StyleCLIP(text_model=ColourClip()).analyze({"aligned": samples}, ctx, StyleCLIP.make_config(settings))
    mapper_only = StyleCLIP.make_config({**settings, "methods": ["mapper"]})
    result = StyleCLIP(text_model=ColourClip()).analyze({"aligned": samples}, ctx, mapper_only)
    assert list(result.tables["edits"]["method"]) == ["mapper (W+)"]


def test_a_prompts_mapper_overrides_change_only_that_prompts_mapper(tiny, tmp_path):
    samples, scorer = _red_samples(tiny, 12)
    ctx = AnalysisContext(generators={"aligned": tiny}, work_dir=tmp_path / "work", scorer=scorer)
    cfg = StyleCLIP.make_config({
        "prompts": {"a red face": "red+", "a blue face": ""}, "methods": ["mapper"], "identity": "pixels",
        "mapper_steps": 2, "mapper_batch": 1, "mapper_latents": 4, "eval_samples": 6, "grid_samples": 0,
        "sweep_roles": [], "mapper_overrides": {"a blue face": {"mapper_groups": ["fine"], "mapper_steps": 3}}})
    assert cfg.mapper_settings("a red face") == cfg.mapper_settings()
    assert cfg.mapper_settings("a blue face") == replace(cfg.mapper_settings(), groups=("fine",), steps=3)
    result = StyleCLIP(text_model=ColourClip()).analyze({"aligned": samples}, ctx, cfg)
    assert dict(zip(result.tables["mapper"]["prompt"], result.tables["mapper"]["steps"])) == {
        "a red face": 2, "a blue face": 3}
    trained = {prompt: torch.load(tmp_path / "work" / "aligned" / "mappers" / slug / "mapper.pt")
               for prompt, slug in [("red", "a-red-face"), ("blue", "a-blue-face")]}
    assert trained["red"]["config"]["groups"] == ["coarse", "medium", "fine"]
    assert trained["blue"]["config"]["groups"] == ["fine"]


def test_config_errors():
    with pytest.raises(ConfigError, match="methods"):
        StyleCLIP.make_config({"methods": ["sideways"]})
    with pytest.raises(ConfigError, match="mapper_prompts"):
        StyleCLIP.make_config({"mapper_prompts": ["a purple face"]})
    with pytest.raises(ConfigError, match="templates"):
        StyleCLIP.make_config({"templates": ["a photo"]})
    with pytest.raises(ConfigError, match="alpha_step"):
        StyleCLIP.make_config({"alpha_step": 2.0, "alpha_max": 1.0})
    with pytest.raises(ConfigError, match="calibration_samples"):
        StyleCLIP.make_config({"calibration_samples": 1})
    with pytest.raises(ConfigError, match="not among the prompts"):
        StyleCLIP.make_config({"mapper_overrides": {"a purple face": {"lambda_id": 0.3}}})
    with pytest.raises(ConfigError, match="lambda: not a mapper setting"):
        StyleCLIP.make_config({"mapper_overrides": {"a smiling face": {"lambda": 0.3}}})
    with pytest.raises(ConfigError, match="a smiling face.lambda_id' must be float"):
        StyleCLIP.make_config({"mapper_overrides": {"a smiling face": {"lambda_id": "high"}}})


def test_prepare_refuses_a_run_it_cannot_finish_before_any_sampling():
    toy_names = ("smiling", "eyeglasses", "bangs", "skin_tone", "hair_color", "eye_openness", "face_width",
                 "background_hue")
    scorer = SimpleNamespace(name="toy", attributes=tuple(Attribute(n, "continuous", (0, 1)) for n in toy_names))
    plan = RunPlan(seeds=np.arange(2000), scorer=scorer)
    StyleCLIP(text_model=ColourClip()).prepare(StyleCLIP.make_config({}), plan)  # the defaults pass
    with pytest.raises(ConfigError, match="mapper groups"):
        StyleCLIP(text_model=ColourClip()).prepare(
            StyleCLIP.make_config({"mapper_overrides": {"a smiling face": {"mapper_groups": ["eyes"]}}}), plan)
    with pytest.raises(ConfigError, match=r"prompts\['a happy face'\]: .* the scorer has no attribute 'happy'"):
        StyleCLIP(text_model=ColourClip()).prepare(StyleCLIP.make_config({"prompts": {"a happy face": "happy+"}}),
                                                   plan)
    probe_seeds = len(np.intersect1d(np.arange(2000), parse_seeds(StyleCLIP.make_config({}).probe_seeds)))
    few = replace(plan, seeds=np.arange(probe_seeds + 65))  # 65 outside the probe seeds: 64 held out
    with pytest.raises(ConfigError, match="1 samples outside the probe seeds and the held-out ones"):
        StyleCLIP(text_model=ColourClip()).prepare(StyleCLIP.make_config({}), few)
    StyleCLIP(text_model=ColourClip()).prepare(StyleCLIP.make_config({"alpha": 2.0}), few)  # alpha given
    with pytest.raises(ConfigError, match="needs an attribute scorer"):
        StyleCLIP(text_model=ColourClip()).prepare(StyleCLIP.make_config({}), replace(plan, scorer=None))


# ----- sg3probe edit --text -----------------------------------------------------------------------

CLIP_PLUGIN = '''
import torch
import torch.nn.functional as F
import sg3probe
from sg3probe.textimage import TextImageScorer

WORDS = {"red": (2.0, 0.0, 0.0), "green": (0.0, 2.0, 0.0), "blue": (0.0, 0.0, 2.0)}

class FileColourClip(TextImageScorer):
    name = "filecolourclip"
    global_beta = 0.05
    def preprocess(self, images):
        return images
    def encode_image(self, images):
        return F.normalize(images.mean(dim=(2, 3)) + 1.5, dim=1)
    def encode_text(self, texts):
        rows = [torch.tensor([1.0, 1.0, 1.0]) + sum((torch.tensor(WORDS[w]) for w in t.split() if w in WORDS),
                                                     torch.zeros(3)) for t in texts]
        return F.normalize(torch.stack(rows), dim=1)

@sg3probe.hookimpl
def register_scorers(register):
    register(FileColourClip)
'''


def test_edit_text_computes_then_reuses_the_cached_global_direction(tiny, tmp_path):
    from sg3probe.checkpoints.native import save_generator
    from sg3probe.cli.edit_commands import render_latents
    from sg3probe.cli.main import cli
    from sg3probe.editing import load_direction

    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "colour_clip.py").write_text(CLIP_PLUGIN)
    model = save_generator(tiny, tmp_path / "tiny.pt")
    common = ["edit", "--model", str(model), "--seeds", "5,6", "--text", "a red face", "--neutral", "a face",
              "--beta", "0.05", "--alpha", "0,4", "--text-model", "filecolourclip", "--probe-seeds", "0-1",
              "--cache-dir", str(tmp_path / "cache"), "--plugins-dir", str(plugins)]
    first = CliRunner().invoke(cli, common + ["--outdir", str(tmp_path / "one")])
    assert first.exit_code == 0, first.output
    chunks = sorted((tmp_path / "cache").rglob("channels_*.npy"))
    assert chunks and "S channels" in first.output
    stamps = [c.stat().st_mtime_ns for c in chunks]
    second = CliRunner().invoke(cli, common + ["--outdir", str(tmp_path / "two")])
    assert second.exit_code == 0, second.output
    assert [c.stat().st_mtime_ns for c in chunks] == stamps  # loaded from the cache, not recomputed
    direction = load_direction(tmp_path / "one" / "direction.npy")
    assert direction.space == "s" and direction.metadata["text"] == "a red face"
    np.testing.assert_array_equal(direction.vector, load_direction(tmp_path / "two" / "direction.npy").vector)
    latents = np.load(tmp_path / "one" / "latents.npz")
    assert latents["strength"].tolist() == [0.0, 4.0, 0.0, 4.0]
    images = render_latents(tiny, tmp_path / "one" / "latents.npz")  # [seed5 a0, seed5 a4, seed6 a0, seed6 a4]
    clip = ColourClip()
    similarity = clip.encode_image(images) @ clip.encode_text(["a red face"])[0]
    assert similarity[1] > similarity[0] and similarity[3] > similarity[2]
    defaults = CliRunner().invoke(cli, [a for a in common if a not in ("--beta", "0.05", "--alpha", "0,4")]
                                  + ["--outdir", str(tmp_path / "d")])  # the text model's beta, calibrated alpha
    assert defaults.exit_code == 0 and "beta 0.05" in defaults.output, defaults.output
    calibrated = load_direction(tmp_path / "d" / "direction.npy").metadata["alpha_calibration"]
    assert calibrated["reached"] and calibrated["seeds"] == "1000-1063" and "calibrated on seeds" in defaults.output
    alpha = calibrated["alpha"]
    assert np.load(tmp_path / "d" / "latents.npz")["strength"].tolist() == [0.0, alpha, 0.0, alpha] and alpha > 0
    too_high = CliRunner().invoke(cli, common[:-8] + ["--beta", "1.5", "--text-model", "filecolourclip",
                                                      "--probe-seeds", "0-1", "--cache-dir", str(tmp_path / "cache"),
                                                      "--plugins-dir", str(plugins), "--outdir", str(tmp_path / "x")])
    assert too_high.exit_code != 0 and "lower --beta" in too_high.output
    both = CliRunner().invoke(cli, ["edit", str(tmp_path / "one" / "direction.npy")] + common[1:]
                              + ["--outdir", str(tmp_path / "y")])
    assert both.exit_code != 0 and "exactly one" in both.output
    missing = CliRunner().invoke(cli, common[:11] + ["--text-model", "nosuchclip", "--outdir", str(tmp_path / "z")])
    assert missing.exit_code != 0 and "nosuchclip" in missing.output and len(missing.output.strip().splitlines()) == 1
    again = CliRunner().invoke(cli, ["edit", str(tmp_path / "one" / "direction.npy"), "--model", str(model), "--raw",
                                     "--strength", "1", "--latents", str(tmp_path / "one" / "latents.npz"),
                                     "--outdir", str(tmp_path / "w")])  # its ws would lose the S edit
    assert again.exit_code != 0 and "StyleSpace edits" in again.output


def test_edit_with_a_mapper_writes_its_edits_and_latents_that_re_render_to_the_images(tiny, tmp_path):
    from PIL import Image

    from sg3probe.checkpoints.native import save_generator
    from sg3probe.cli.edit_commands import render_latents
    from sg3probe.cli.main import cli
    from sg3probe.imaging import to_uint8
    from sg3probe.sampling.latents import z_from_seeds

    clip = ColourClip()
    target = clip.encode_text(["a red face"])[0].numpy()
    latents = seed_ws(tiny, list(range(16)), 1.0, None)
    settings = MapperSettings(steps=3, batch_size=2, lambda_id=0.0)
    train_mapper(tiny, clip, target, latents, settings, tmp_path / "m", meta={"prompt": "a red face"})
    model = save_generator(tiny, tmp_path / "tiny.pt")
    common = ["edit", "--model", str(model), "--mapper", str(tmp_path / "m" / "mapper.pt"), "--seeds", "5,6"]
    result = CliRunner().invoke(cli, common + ["--strength", "0,0.5,1", "--outdir", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "'a red face', 3 steps" in result.output and "x the mapper's edit" in result.output
    written = np.load(tmp_path / "out" / "latents.npz")
    assert written["strength"].tolist() == [0.0, 0.5, 1.0] * 2
    mapper, _ = load_mapper(tmp_path / "m" / "mapper.pt")
    with torch.no_grad():
        ws = tiny.mapping(z_from_seeds([5, 6], tiny.z_dim), None)
        expected = torch.stack([ws, mapper.edit(ws, 0.5), mapper.edit(ws)], dim=1).reshape(-1, *ws.shape[1:])
    np.testing.assert_allclose(written["ws"], expected.numpy(), atol=1e-6)
    assert not np.allclose(written["ws"][0], written["ws"][2])  # the trained edit moves the latents
    images = to_uint8(render_latents(tiny, tmp_path / "out" / "latents.npz"))
    png = np.asarray(Image.open(tmp_path / "out" / "images" / "seed0006_+1p00.png"))
    np.testing.assert_array_equal(png.reshape(images[5].shape), images[5])
    default = CliRunner().invoke(cli, common + ["--outdir", str(tmp_path / "default")])
    assert default.exit_code == 0 and np.load(tmp_path / "default" / "latents.npz")["strength"].tolist() == [0, 1, 0, 1]
    rows = CliRunner().invoke(cli, common + ["--layers", "0-2", "--outdir", str(tmp_path / "rows")])
    assert rows.exit_code != 0 and "do not apply to --mapper" in rows.output
    both = CliRunner().invoke(cli, common + ["--text", "a red face", "--outdir", str(tmp_path / "both")])
    assert both.exit_code != 0 and "exactly one" in both.output
    (tmp_path / "text.pt").write_text("not a checkpoint")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    for name in ("text.pt", "other.pt"):
        wrong = CliRunner().invoke(cli, common[:3] + ["--mapper", str(tmp_path / name), "--seeds", "5",
                                                      "--outdir", str(tmp_path / "wrong")])
        assert wrong.exit_code == 2 and "is not a StyleCLIP mapper checkpoint" in wrong.output, wrong.output
        assert len(wrong.output.strip().splitlines()) == 1
