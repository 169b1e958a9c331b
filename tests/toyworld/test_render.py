"""The toyfaces renderer: determinism, output contract, attributes against masks, pose, sampling."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from sg3probe.toyworld.render import (
    ATTRIBUTES,
    CORRELATIONS,
    NOISE_DIM,
    POSE,
    REGIONS,
    RESOLUTION,
    FaceParams,
    attributes_from_noise,
    render,
    sample_params,
)

EYES, MOUTH, EYEGLASSES = REGIONS.index("eyes"), REGIONS.index("mouth"), REGIONS.index("eyeglasses")


def _dilate(region: torch.Tensor, pixels: int) -> torch.Tensor:
    """Grows a boolean mask [batch, H, W] by `pixels` in every direction."""
    size = 2 * pixels + 1
    grown = torch.nn.functional.max_pool2d(region.float().unsqueeze(1), size, stride=1, padding=pixels)
    return grown.squeeze(1) > 0


def _centroid(region: torch.Tensor) -> torch.Tensor:
    """Centroid (x, y) in pixels of each boolean mask [batch, H, W] -> [batch, 2]."""
    coordinates = torch.arange(RESOLUTION, dtype=torch.float32)
    area = region.sum(dim=(1, 2)).float()
    x = (region.sum(dim=1).float() * coordinates).sum(dim=1) / area
    y = (region.sum(dim=2).float() * coordinates).sum(dim=1) / area
    return torch.stack([x, y], dim=1)


def _constant(params: FaceParams, **values) -> FaceParams:
    """`params` with the named fields set to one value for every face."""
    return params.replace(**{name: torch.full_like(getattr(params, name), value) for name, value in values.items()})


def test_same_seed_gives_the_same_faces_and_another_seed_does_not():
    first = render(sample_params(seed=7, n=16, aligned=False))
    again = render(sample_params(seed=7, n=16, aligned=False))
    other = render(sample_params(seed=8, n=16, aligned=False))
    assert torch.equal(first.images, again.images) and torch.equal(first.masks, again.masks)
    assert not torch.allclose(first.images, other.images)


def test_each_face_is_rendered_independently_of_its_batch():
    params = sample_params(seed=3, n=150, aligned=False)  # more than one internal chunk
    whole = render(params)
    for index in (0, 70, 149):
        alone = render(params.select(index))
        assert torch.allclose(whole.images[index], alone.images[0], atol=1e-6)
        assert torch.equal(whole.masks[index], alone.masks[0])


def test_output_shapes_dtypes_and_ranges():
    output = render(sample_params(seed=0, n=32, aligned=True))
    assert output.images.shape == (32, 3, RESOLUTION, RESOLUTION) and output.images.dtype == torch.float32
    assert output.masks.shape == (32, RESOLUTION, RESOLUTION) and output.masks.dtype == torch.int64
    assert output.images.min() >= -1.0 and output.images.max() <= 1.0
    assert output.images.min() < -0.5 and output.images.max() > 0.5  # uses the range
    assert output.masks.min() >= 0 and output.masks.max() < len(REGIONS)
    for name in ("background", "skin", "hair", "eyes", "brows", "mouth"):
        present = (output.masks == REGIONS.index(name)).flatten(1).any(dim=1)
        assert present.all(), f"region {name} missing in an aligned face"


def test_edges_are_anti_aliased():
    output = render(sample_params(seed=0, n=8, aligned=False))
    values = output.images.flatten()
    palette_free = ((values > -0.999) & (values < 0.999)).float().mean()
    assert palette_free > 0.9
    # An anti-aliased edge has intermediate values: many more distinct levels than parts.
    assert torch.unique(output.images[0, 0]).numel() > 100


def test_eyeglasses_mask_is_non_empty_exactly_when_eyeglasses_are_on():
    params = sample_params(seed=1, n=256, aligned=False)
    has_frames = (render(params).masks == EYEGLASSES).flatten(1).any(dim=1)
    assert params.eyeglasses.any() and not params.eyeglasses.all()
    assert torch.equal(has_frames, params.eyeglasses)


def test_smiling_changes_only_the_mouth_region():
    params = sample_params(seed=2, n=64, aligned=False)
    neutral = render(_constant(params, smiling=False))
    smiling = render(_constant(params, smiling=True))
    mouth = _dilate((neutral.masks == MOUTH) | (smiling.masks == MOUTH), pixels=2)
    changed = (neutral.images - smiling.images).abs().amax(dim=1) > 1e-4
    assert changed.flatten(1).any(dim=1).all(), "smiling must change every face"
    assert not (changed & ~mouth).any(), "smiling changed pixels outside the mouth"
    assert torch.equal(neutral.masks[~mouth], smiling.masks[~mouth])


@pytest.mark.parametrize(
    ("field", "low", "high", "region"),
    [
        ("bangs", False, True, "hair"),
        ("eye_openness", 0.0, 1.0, "eyes"),
        ("face_width", 0.0, 1.0, "skin"),
        ("hair_color", 0.0, 1.0, "hair"),
        ("skin_tone", 0.0, 1.0, "skin"),
        ("background_hue", 0.0, 1.0, "background"),
        ("eyeglasses", False, True, "eyeglasses"),
    ],
)
def test_each_attribute_changes_its_part(field, low, high, region):
    params = sample_params(seed=4, n=16, aligned=True)
    before = render(_constant(params, **{field: low}))
    after = render(_constant(params, **{field: high}))
    region_id = REGIONS.index(region)
    inside = (before.masks == region_id) | (after.masks == region_id)
    difference = (before.images - after.images).abs().amax(dim=1)
    assert (difference * inside).flatten(1).amax(dim=1).min() > 0.05, f"{field} did not change {region}"
    if field in ("bangs", "eye_openness", "face_width", "eyeglasses"):  # shape attributes grow their part
        grown = (after.masks == region_id).sum(dim=(1, 2)) > (before.masks == region_id).sum(dim=(1, 2))
        assert grown.all()


def test_rotating_by_90_degrees_rotates_the_image():
    params = _constant(sample_params(seed=5, n=8, aligned=True), angle=0.0)
    upright = render(params)
    turned = render(_constant(params, angle=90.0))
    # Positive angles are counter-clockwise on screen, like torch.rot90 over (H, W).
    expected_images = torch.rot90(upright.images, k=1, dims=(2, 3))
    expected_masks = torch.rot90(upright.masks, k=1, dims=(1, 2))
    assert (turned.images - expected_images).abs().max() < 1e-3
    assert (turned.masks != expected_masks).float().mean() < 1e-3
    assert not torch.allclose(turned.images, upright.images, atol=0.1)


def test_translation_moves_the_parts_by_the_expected_pixels():
    params = _constant(sample_params(seed=6, n=8, aligned=True), tx=0.0, ty=0.0)
    centred = render(params)
    moved = render(_constant(params, tx=0.1, ty=-0.05))
    # Hard masks move in whole pixels at a region's edges: a closed mouth 3 rows tall can put its
    # centroid up to about 0.7 px off a sub-pixel shift; the taller eyes much less.
    for region, tolerance in ((EYES, 0.3), (MOUTH, 0.75)):
        shift = _centroid(moved.masks == region) - _centroid(centred.masks == region)
        expected = torch.tensor([0.1, -0.05]) * RESOLUTION
        assert torch.allclose(shift, expected.expand_as(shift), atol=tolerance), shift


def test_pose_rotates_the_masks_about_the_image_centre():
    params = _constant(sample_params(seed=9, n=8, aligned=True), smiling=False)
    tilted = render(_constant(params, angle=20.0))
    # The mouth sits below the centre; a counter-clockwise turn moves it to the right.
    centre = (RESOLUTION - 1) / 2
    upright_mouth = _centroid(render(params).masks == MOUTH) - centre
    tilted_mouth = _centroid(tilted.masks == MOUTH) - centre
    angle = torch.atan2(upright_mouth[:, 1], upright_mouth[:, 0]) - torch.atan2(tilted_mouth[:, 1], tilted_mouth[:, 0])
    # The mouth is 11 px from the centre, so its whole-pixel mask edges (see above) allow ~2.5 deg.
    assert torch.allclose(torch.rad2deg(angle), torch.full((8,), 20.0), atol=2.5)


def test_aligned_pose_is_zero_and_unaligned_pose_spans_the_documented_ranges():
    aligned = sample_params(seed=0, n=2000, aligned=True).pose_values()
    assert torch.equal(aligned, torch.zeros_like(aligned))
    unaligned = sample_params(seed=0, n=20000, aligned=False).pose_values()
    bounds = torch.tensor([info.high for info in POSE])
    assert (unaligned.abs() <= bounds).all()
    # Uniform on [-b, b]: standard deviation b / sqrt(3).
    assert torch.allclose(unaligned.std(dim=0), bounds / math.sqrt(3), rtol=0.03)


def test_attribute_frequencies_and_correlations_match_the_documentation():
    params = sample_params(seed=2024, n=20000, aligned=False)
    values = params.attribute_values().double()  # [20000, attributes]
    for column, info in enumerate(ATTRIBUTES):
        if info.kind == "binary":
            assert abs(values[:, column].mean() - info.frequency) < 0.015, info.name
        else:
            assert values[:, column].min() >= info.low and values[:, column].max() <= info.high
            middle, spread = (info.low + info.high) / 2, (info.high - info.low) / math.sqrt(12)
            assert abs(values[:, column].mean() - middle) < 0.01 * (info.high - info.low), info.name
            assert abs(values[:, column].std() - spread) < 0.01 * (info.high - info.low), info.name
    correlation = torch.corrcoef(values.T)
    names = [info.name for info in ATTRIBUTES]
    for i, first in enumerate(names):
        for j, second in enumerate(names[:i]):
            documented = CORRELATIONS.get((first, second), CORRELATIONS.get((second, first), 0.0))
            assert abs(correlation[i, j] - documented) < 0.03, (first, second, float(correlation[i, j]))
    assert any(abs(value) > 0.3 for value in CORRELATIONS.values())


def test_attributes_are_a_function_of_the_noise():
    noise = torch.randn(10, NOISE_DIM, generator=torch.Generator().manual_seed(0))
    first, second = attributes_from_noise(noise, aligned=False), attributes_from_noise(noise.clone(), aligned=False)
    for field in dataclasses.fields(FaceParams):
        assert torch.equal(getattr(first, field.name), getattr(second, field.name))
    flipped = attributes_from_noise(torch.cat([-noise[:, :1], noise[:, 1:]], dim=1), aligned=False)
    assert torch.equal(flipped.smiling, ~first.smiling)
    with pytest.raises(ValueError, match="NOISE_DIM|shape"):
        attributes_from_noise(torch.randn(4, NOISE_DIM + 1), aligned=True)
    with pytest.raises(ValueError, match="positive"):
        sample_params(seed=0, n=0, aligned=True)


def test_attribute_metadata_is_complete():
    fields = {field.name for field in dataclasses.fields(FaceParams)}
    names = [info.name for info in ATTRIBUTES + POSE]
    assert len(names) == len(set(names)) and set(names) <= fields
    kinds = [info.kind for info in ATTRIBUTES]
    assert kinds.count("binary") >= 3 and kinds.count("continuous") >= 4
    for info in ATTRIBUTES:
        assert info.low < info.high and info.changes and info.distribution
        assert (info.frequency is not None) == (info.kind == "binary")
        assert all(0 <= dim < NOISE_DIM for dim in info.noise_dims)
    assert {"background", "skin", "hair", "eyes", "brows", "mouth", "eyeglasses"} <= set(REGIONS)


def _check_grid_command(cli, args, tmp_path):
    """Runs `render` through a click group and checks the PNGs it writes."""
    out = tmp_path / "grid.png"
    result = CliRunner().invoke(cli, [*args, "--n", "6", "--unaligned", "--seed", "3", "--masks",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    with Image.open(out) as grid, Image.open(tmp_path / "grid-masks.png") as masks:
        # 3 x 2 tiles of 64 px with 1-px gaps.
        assert grid.size == masks.size == (3 * 65 + 1, 2 * 65 + 1)
        assert grid.mode == "RGB"


def test_toy_render_command_writes_image_and_mask_grids(tmp_path):
    from sg3probe.cli.toy import toy

    _check_grid_command(toy, ["render"], tmp_path)


def test_sg3probe_toy_render_through_the_main_command(tmp_path):
    try:
        from sg3probe.cli.main import cli
    except ImportError as error:  # main.py also imports commands that other modules provide
        pytest.skip(f"sg3probe.cli.main cannot be imported yet: {error}")
    _check_grid_command(cli, ["toy", "render"], tmp_path)
