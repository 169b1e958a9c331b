"""The fast resampling ops equal NVIDIA's naive formulation (zero insertion, full-rate filtering, decimation)."""
import pytest
import torch

from sg3probe.models.filters import design_lowpass_filter, transposed_conv_crop
from sg3probe.models.ops import (downsample2d, filtered_lrelu, reference_filtered_lrelu, reference_upfirdn2d,
                                 upsample2d)

# (up, taps, padding x0, x1, y0, y1): StyleGAN3's cases, plus paddings wider than a full convolution,
# asymmetric crops and a padded-then-cropped mix.
UP_CASES = [(2, 12, (9, 8, 9, 8)), (2, 12, (11, 10, 11, 10)), (4, 24, (-6, -9, -6, -9)), (2, 12, (-11, -12, -11, -12)),
            (2, 12, (20, 3, -3, 15)), (4, 24, (0, 0, 30, -7)), (1, 1, (2, -1, 0, 3)), (3, 7, (1, 2, 5, 0))]


@pytest.mark.parametrize("up,taps,padding", UP_CASES)
def test_upsample2d_equals_zero_insertion(up, taps, padding):
    torch.manual_seed(0)
    f = torch.rand(taps) if taps > 1 else None
    x = torch.randn(2, 3, 30, 26)
    expected = reference_upfirdn2d(x, f, up=up, padding=padding, gain=up ** 2)
    torch.testing.assert_close(upsample2d(x, f, up, padding, gain=up ** 2), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("down,radial", [(2, False), (2, True), (1, False), (3, True)])
def test_downsample2d_equals_filter_then_decimate(down, radial):
    torch.manual_seed(0)
    f = torch.rand(12, 12) if radial else torch.rand(12)
    x = torch.randn(2, 3, 40, 33)
    torch.testing.assert_close(downsample2d(x, f, down, gain=1.7), reference_upfirdn2d(x, f, down=down) * 1.7,
                               atol=1e-5, rtol=1e-5)


def test_transposed_conv_crop_lengths():
    for n, taps, up, pad0, pad1 in [(86, 12, 2, 9, 8), (38, 24, 4, -6, -9), (20, 12, 2, 20, 3), (20, 12, 2, -3, 15)]:
        pre0, pre1, padding, crop0, crop1 = transposed_conv_crop(n, taps, up, pad0, pad1)
        full = (n + pre0 + pre1 - 1) * up + taps
        assert min(pre0, pre1, padding, crop0, crop1) >= 0
        assert full - 2 * padding - crop0 - crop1 == n * up + pad0 + pad1 - taps + 1


@pytest.mark.parametrize("radial", [False, True])
def test_filtered_lrelu_values_and_gradients_equal_reference(radial):
    torch.manual_seed(0)
    up_filter = design_lowpass_filter(12, 10.0, 8.0, 64)
    down_filter = design_lowpass_filter(12, 8.0, 10.0, 64, radial=radial)
    kwargs = dict(up_filter=up_filter, down_filter=down_filter, up=2, down=2, padding=(9, 8, 9, 8),
                  gain=2 ** 0.5, slope=0.2, clamp=2.0)  # a low clamp, so that it acts
    x = (torch.randn(2, 4, 20, 20) * 3).requires_grad_(True)
    bias = torch.randn(4, requires_grad=True)
    ours = filtered_lrelu(x, bias, **kwargs)
    naive = reference_filtered_lrelu(x, bias, **kwargs)
    torch.testing.assert_close(ours, naive, atol=1e-5, rtol=1e-5)
    assert (naive.abs() > 1.99).any()  # the clamp was exercised
    weights = torch.randn_like(naive)
    grads = torch.autograd.grad((ours * weights).sum(), [x, bias])
    expected = torch.autograd.grad((naive * weights).sum(), [x, bias])
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    with torch.no_grad():  # the in-place path gives the same values
        torch.testing.assert_close(filtered_lrelu(x, bias, **kwargs), naive, atol=1e-5, rtol=1e-5)
