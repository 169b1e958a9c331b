"""The rotation plugin: model-free registration checked against the r64 generator's own transform,
the model-internal angle, the ablation helpers, and the analyzer end to end.

The r64 conformance network has random weights: its images are smooth textures, not faces, and its
learned translations are large, so the ws[0] test picks codes whose translation keeps the images
overlapping. It is rotation-equivariant by construction (StyleGAN3-R), so its user transform is a
ground truth for rotations and translations.
"""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

import sg3probe
from sg3probe.cli.main import cli
from sg3probe_rotation import geometry
from sg3probe_rotation.ablation import Target, ablate, derangement, parse_range

ANGLES = (-60.0, -41.5, -20.0, -7.25, 0.7, 12.0, 33.3, 60.0)
TRANSLATIONS = ((0.05, 0.0), (0.0, -0.03), (-0.04, 0.06))  # fractions of the width
COMBINED = ((25.0, (0.04, -0.03)), (-50.0, (-0.05, 0.02)))


class R64Renders:
    """One r64 sample rendered under known user transforms, and with other ws[0] rows."""

    def __init__(self, path):
        G = sg3probe.load_generator(path)
        ws = G.mapping(sg3probe.z_from_seeds(range(40), G.z_dim), None)  # [40, num_ws, w_dim]
        internal = geometry.internal_geometry(G, ws)
        # Codes whose learned translation is small (< 12 % of the width) keep the images overlapping.
        small = np.flatnonzero(np.hypot(internal["tx"], internal["ty"]) < 0.12)
        assert len(small) >= 4, "the r64 fixture changed: too few codes with a small translation"
        self.base_index, others = int(small[0]), small[1:5]
        base = ws[self.base_index:self.base_index + 1]
        variants = base.repeat(len(others), 1, 1)
        variants[:, 0] = ws[others, 0]  # only ws[0] differs
        self.width = G.img_resolution
        transforms = ([sg3probe.inverse_transform(angle=a) for a in ANGLES]
                      + [sg3probe.inverse_transform(translate=t) for t in TRANSLATIONS]
                      + [sg3probe.inverse_transform(translate=t, angle=a) for a, t in COMBINED])
        batch = torch.cat([base.repeat(len(transforms) + 1, 1, 1), variants, ws[others[:2]]])
        transforms = torch.stack([torch.eye(3)] + transforms + [torch.eye(3)] * (len(others) + 2))
        with torch.no_grad():  # one batch: much faster than one image at a time
            images = G.synthesis(batch, transform=transforms).numpy()
        parts = np.split(images, np.cumsum([1, len(ANGLES), len(TRANSLATIONS), len(COMBINED), len(others)]))
        self.base, self.rotated, self.translated, self.combined, self.variants, self.unrelated = parts
        self.internal_difference = (geometry.internal_geometry(G, variants)["angle_deg"]
                                    - geometry.internal_geometry(G, base)["angle_deg"])

    def repeated_base(self, count):
        return np.repeat(self.base, count, axis=0)


@pytest.fixture
def one_thread():
    """Torch on one thread while rendering: on a shared 2-core CPU, two threads are many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def r64_renders(r64):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return R64Renders(r64.pickle_path)
    finally:
        torch.set_num_threads(threads)


def test_user_rotation_is_recovered_within_half_a_degree(r64_renders):
    found = geometry.register(r64_renders.repeated_base(len(ANGLES)), r64_renders.rotated)
    errors = np.abs(geometry.wrap_degrees(found.angle_deg - np.array(ANGLES)))
    assert errors.max() < 0.5, errors
    assert errors.mean() < 0.1, errors
    assert np.abs(found.shift_px).max() < 0.5  # rotation about the centre, no shift
    assert found.confidence.min() > 0.8


def test_polar_phase_correlation_alone_recovers_rotations_about_the_centre(r64_renders):
    angles, confidence = geometry.polar_rotation(r64_renders.repeated_base(len(ANGLES)), r64_renders.rotated)
    assert np.abs(geometry.wrap_degrees(angles - np.array(ANGLES))).max() < 0.5
    assert confidence.min() > 0.9


def test_user_translation_is_recovered_within_half_a_pixel(r64_renders):
    found = geometry.register(r64_renders.repeated_base(len(TRANSLATIONS)), r64_renders.translated)
    expected = np.array(TRANSLATIONS) * r64_renders.width  # content moves right and down by t * width
    assert np.abs(found.shift_px - expected).max() < 0.5, found.shift_px - expected
    assert np.abs(found.angle_deg).max() < 0.5


def test_rotation_and_translation_together(r64_renders):
    found = geometry.register(r64_renders.repeated_base(len(COMBINED)), r64_renders.combined)
    angles = np.array([a for a, _ in COMBINED])
    shifts = np.array([t for _, t in COMBINED]) * r64_renders.width
    assert np.abs(geometry.wrap_degrees(found.angle_deg - angles)).max() < 0.5
    assert np.abs(found.shift_px - shifts).max() < 0.5


def test_image_rotation_between_ws0_variants_matches_the_internal_angle(r64_renders):
    # Fixes the sign convention: atan2(r_s, r_c) turns the image the way the measured angle counts.
    found = geometry.register(r64_renders.repeated_base(len(r64_renders.variants)), r64_renders.variants)
    expected = geometry.wrap_degrees(r64_renders.internal_difference)
    assert np.abs(expected).max() > 5  # the variants do turn the image
    assert np.abs(geometry.wrap_degrees(found.angle_deg - expected)).max() < 2.0, (found.angle_deg, expected)


def test_confidence_separates_moved_from_unrelated_images(r64_renders):
    moved = geometry.register(r64_renders.repeated_base(len(r64_renders.variants)), r64_renders.variants)
    unrelated = geometry.register(r64_renders.repeated_base(len(r64_renders.unrelated)), r64_renders.unrelated)
    assert moved.confidence.min() > 0.8
    # Random-weight textures are smooth and can look alike, so only on average far below.
    assert unrelated.confidence.max() < moved.confidence.min() and unrelated.confidence.mean() < 0.5


def test_warp_turns_content_counter_clockwise_on_screen_and_shifts_right_and_down():
    image = np.zeros((1, 33, 33))
    image[0, 16, 26] = 1.0  # a dot 10 px right of the centre (16, 16)
    turned, _ = geometry.warp(image, 90.0, np.zeros((1, 2)))
    assert np.unravel_index(turned[0, 0].argmax(), (33, 33)) == (6, 16)  # now 10 px above the centre
    moved, valid = geometry.warp(image, 0.0, np.array([[3.0, -2.0]]))
    assert np.unravel_index(moved[0, 0].argmax(), (33, 33)) == (14, 29)
    # The left columns and the bottom rows came from outside the source.
    assert not valid[0, :, :3].any() and not valid[0, -2:].any() and valid[0, :-2, 3:].all()


def test_register_recovers_a_warp_of_a_synthetic_texture():
    rng = np.random.default_rng(0)
    from scipy import ndimage
    texture = ndimage.gaussian_filter(rng.standard_normal((2, 3, 64, 64)), sigma=(0, 0, 2.5, 2.5))
    angles, shifts = np.array([-123.0, 17.4]), np.array([[1.3, -2.2], [-0.4, 2.9]])
    moved, _ = geometry.warp(texture, angles, shifts)
    found = geometry.register(texture, moved)
    assert np.abs(geometry.wrap_degrees(found.angle_deg - angles)).max() < 0.5
    assert np.abs(found.shift_px - shifts).max() < 0.5


def test_internal_geometry_reads_the_input_style(t64):
    G = sg3probe.load_generator(t64.pickle_path)
    ws = G.mapping(sg3probe.z_from_seeds([1, 2], G.z_dim), None)
    t = G.styles(ws)["input"].double().numpy()
    found = geometry.internal_geometry(G, ws)
    assert np.allclose(found["angle_deg"], np.degrees(np.arctan2(t[:, 1], t[:, 0])))
    assert np.allclose(found["tx"], t[:, 2]) and np.allclose(found["ty"], t[:, 3])


def test_register_rejects_mismatched_images():
    with pytest.raises(ValueError, match="same shape"):
        geometry.register(np.zeros((1, 3, 32, 32)), np.zeros((1, 3, 32, 16)))


def test_ablation_helpers():
    donors = derangement(7, np.random.default_rng(1))
    assert sorted(donors) == list(range(7)) and not np.any(donors == np.arange(7))
    ws = torch.arange(3 * 4 * 2, dtype=torch.float32).reshape(3, 4, 2)
    w_avg = torch.full((2,), -1.0)
    swapped = ablate(ws, Target(1, 2), "resample", donors=np.array([2, 0, 1]), w_avg=w_avg, fixed=ws[0])
    assert torch.equal(swapped[0, 1:3], ws[2, 1:3]) and torch.equal(swapped[:, [0, 3]], ws[:, [0, 3]])
    assert torch.equal(ablate(ws, Target(0, 0), "w_avg", donors=donors, w_avg=w_avg, fixed=ws[0])[:, 0],
                       w_avg.expand(3, 2))
    assert parse_range("0-1", 16) == Target(0, 1) and parse_range("5", 16) == Target(5, 5)
    with pytest.raises(ValueError, match="0 <= a <= b < 16"):
        parse_range("3-16", 16)


SCORER_PLUGIN = '''
import numpy as np
import sg3probe
from sg3probe.scorer import Attribute, Scorer

class TinyPose(Scorer):
    """Brightness and redness, and a pose from image moments: enough to exercise every path."""
    name = "tinypose"
    attributes = (Attribute("bright", "continuous", (-1, 1)), Attribute("red", "binary"))

    def score(self, images):
        x = images.detach().float().cpu().numpy()
        return {"bright": x.mean(axis=(1, 2, 3)), "red": (x[:, 0] - x[:, 2]).mean(axis=(1, 2)) * 10}

    def pose(self, images):
        x = images.detach().float().cpu().numpy().mean(axis=1)
        weight = x - x.min(axis=(1, 2), keepdims=True) + 1e-6
        ys, xs = np.mgrid[:x.shape[1], :x.shape[2]]
        total = weight.sum(axis=(1, 2))
        cx, cy = (weight * xs).sum(axis=(1, 2)) / total, (weight * ys).sum(axis=(1, 2)) / total
        u, v = xs - cx[:, None, None], ys - cy[:, None, None]
        angle = -0.5 * np.degrees(np.arctan2(2 * (weight * u * v).sum(axis=(1, 2)),
                                             (weight * (u * u - v * v)).sum(axis=(1, 2))))
        return {"angle_deg": angle, "tx": cx / x.shape[2] - 0.5, "ty": cy / x.shape[1] - 0.5}

@sg3probe.hookimpl
def register_scorers(register):
    register(TinyPose)
'''


def test_rotation_analyzer_runs_end_to_end(tmp_path, t64, one_thread):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "tinypose_scorer.py").write_text(SCORER_PLUGIN)
    out = tmp_path / "run"
    sets = ['rotation.modes=["resample", "w_avg"]', "rotation.indices=[0, 1]", 'rotation.ranges=["0-1"]',
            "rotation.samples=2", "rotation.alignment_samples=1", "rotation.check_samples=1",
            "rotation.check_angles=[10.0]", "rotation.check_translations=[[0.05, 0.0]]", "rotation.strip_columns=2",
            "rotation.refine=1", "grid_size=2", "threads=1"]
    args = ["run", "rotation", "--model", t64.pickle_path, "--unaligned-model", t64.pickle_path,
            "--scorer", "tinypose", "--seeds", "0-3", "--plugins-dir", plugins, "--out", out]
    for assignment in sets:
        args += ["--set", assignment]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    folder = out / "results" / "rotation"
    per_index = (folder / "tables" / "per_index.csv").read_text().splitlines()
    assert len(per_index) == 1 + 2 * 2 * 2  # header + models x modes x indices
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["findings"]["unaligned"]["top_rotation_index"] in (0, 1)
    assert metrics["aligned"]["EQ-T_psnr_db"] > 20  # T-configuration: translation-equivariant
    assert "pseudo_alignment/ws[0] = w_avg" in metrics["unaligned"]
    html = (out / "report.html").read_text()
    for heading in ("Where pose lives", "Pseudo-alignment", "User transform and equivariance", "Compared with the paper"):
        assert heading in html
    assert (folder / "figures").is_dir() and len(list((folder / "figures").glob("*.png"))) == 4


def test_rotation_config_errors_name_the_key(t64):
    from sg3probe.errors import ConfigError
    from sg3probe_rotation.analyzer import Rotation

    with pytest.raises(ConfigError, match="modes"):
        Rotation.make_config({"modes": ["spin"]})


def test_pose_rows_hold_the_early_codes_that_stand_out_not_the_noise_floor():
    from sg3probe_rotation.report import pose_rows

    def rows(shares):
        return pd.DataFrame({"kind": "index", "mode": "resample", "first": range(len(shares)),
                             "rotation_share": shares})

    noise = [0.03] * 16
    # Pose in ws[0..2] plus a noise floor and a content code at the end: hold ws[0..2], not ws[0..14].
    assert pose_rows(rows([0.4, 0.15, 0.1] + noise[3:15] + [0.2]), 16).rows == slice(0, 3)
    # Only ws[0] stands out: still hold ws[0..1], as the paper does.
    assert pose_rows(rows([0.5] + noise[1:]), 16).label == "0-1"
    # Nothing stands out (an aligned model), or nothing measured: the paper's ws[0..1].
    assert pose_rows(rows(noise), 16).label == "0-1"
    assert pose_rows(pd.DataFrame(columns=["kind", "mode", "first", "rotation_share"]), 16).label == "0-1"


def test_too_few_seeds_fail_before_sampling(tmp_path):
    from sg3probe.analyzer import RunPlan
    from sg3probe.errors import ConfigError
    from sg3probe_rotation.analyzer import Rotation

    cfg = Rotation.make_config({})
    Rotation().prepare(cfg, RunPlan(seeds=np.arange(3)))
    with pytest.raises(ConfigError, match="at least 3 sampled seeds per model, got 2"):
        Rotation().prepare(cfg, RunPlan(seeds=np.arange(2)))
