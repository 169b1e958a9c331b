"""The layer hyperparameters and filters we derive equal NVIDIA's (conformance JSON and weights)."""
import numpy as np
import pytest
import torch

from sg3probe.models.architecture import GeneratorConfig, derive_architecture, stylegan3_config
from sg3probe.models.filters import design_lowpass_filter, resampling_matrix


def test_layers_match_nvidia_derivation(fixture):
    config = GeneratorConfig.from_nvidia_kwargs(fixture.meta["init_kwargs"])
    arch = derive_architecture(config)
    assert arch.layer_names == fixture.meta["layer_names"]
    assert config.num_ws == fixture.meta["num_ws"]
    ref_input = fixture.meta["layers"][0]
    assert (arch.input.channels, arch.input.size) == (ref_input["channels"], ref_input["size"][0])
    assert arch.input.sampling_rate == ref_input["sampling_rate"] and arch.input.bandwidth == ref_input["bandwidth"]
    for layer, ref in zip(arch.layers, fixture.meta["layers"][1:]):
        for key in ("in_channels", "out_channels", "in_sampling_rate", "out_sampling_rate", "tmp_sampling_rate",
                    "conv_kernel", "up_factor", "down_factor", "up_taps", "down_taps", "down_radial",
                    "is_torgb", "is_critically_sampled"):
            assert getattr(layer, key) == ref[key], (layer.name, key)
        assert [layer.in_size, layer.in_size] == ref["in_size"] and [layer.out_size] * 2 == ref["out_size"]
        for key in ("in_cutoff", "out_cutoff", "in_half_width", "out_half_width"):
            assert getattr(layer, key) == pytest.approx(ref[key], rel=1e-12)
        assert list(layer.padding) == ref["padding_x0x1y0y1"]


def test_designed_filters_equal_stored_filters(fixture):
    arch = derive_architecture(GeneratorConfig.from_nvidia_kwargs(fixture.meta["init_kwargs"]))
    for layer in arch.layers:
        up = design_lowpass_filter(layer.up_taps, layer.in_cutoff, layer.in_half_width * 2, layer.tmp_sampling_rate)
        down = design_lowpass_filter(layer.down_taps, layer.out_cutoff, layer.out_half_width * 2,
                                     layer.tmp_sampling_rate, radial=layer.down_radial)
        for taps, key in ((up, "up_filter"), (down, "down_filter")):
            stored = fixture.weights.get(f"synthesis.{layer.name}.{key}")
            if stored is None:
                assert taps is None, (layer.name, key)
            else:
                np.testing.assert_allclose(taps.numpy(), stored, atol=1e-7, err_msg=f"{layer.name}.{key}")


def test_stylegan3_r_doubles_channels_and_uses_radial_filters():
    t = stylegan3_config("stylegan3-t", channel_base=1024, channel_max=32, img_resolution=64)
    r = stylegan3_config("stylegan3-r", channel_base=1024, channel_max=32, img_resolution=64)
    assert (r.channel_base, r.channel_max, r.conv_kernel, r.use_radial_filters) == (2048, 64, 1, True)
    assert t.config_name == "stylegan3-t" and r.config_name == "stylegan3-r"
    with pytest.raises(ValueError):
        stylegan3_config("stylegan2")


@pytest.mark.parametrize("up,down,pad", [(2, 1, (11, 10)), (4, 1, (23, 22)), (1, 2, (0, 0)), (2, 2, (-9, -10))])
def test_resampling_matrix_equals_zero_insertion_formulation(up, down, pad):
    torch.manual_seed(0)
    taps = torch.rand(12 if up * down > 1 else 1)
    x = torch.randn(2, 3, 1, 30)
    matrix = resampling_matrix(taps, 30, up=up, down=down, pad0=pad[0], pad1=pad[1], gain=up)
    # The reference pads both axes; give it a height axis of length 1 with zero padding there.
    x_up = torch.zeros(2, 3, 1, 30 * up)
    x_up[..., ::up] = x
    padded = torch.nn.functional.pad(x_up, [max(pad[0], 0), max(pad[1], 0)])
    padded = padded[..., max(-pad[0], 0): padded.shape[-1] - max(-pad[1], 0)]
    conv = torch.nn.functional.conv1d(padded.reshape(6, 1, -1), (taps.flip(0) * up)[None, None]).reshape(2, 3, 1, -1)
    expected = conv[..., ::down]
    np.testing.assert_allclose((x @ matrix.t()).numpy(), expected.numpy(), atol=1e-5)
