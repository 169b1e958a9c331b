"""The two costly operations of a StyleGAN3 synthesis layer, in two formulations.

`modulated_conv2d` / `filtered_lrelu` are what the generator runs. `reference_*` are the literal,
naive formulations (grouped convolution with per-sample weights; zero insertion, filtering at the
upsampled rate, then discarding samples). They are kept as the test oracle and as the baseline of
benchmarks/bench_generator.py; `use_reference_ops(G)` switches a generator to them.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F

from sg3probe.models.filters import transposed_conv_crop


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, *, demodulate: bool,
                     input_gain: torch.Tensor | None, padding: int,
                     bias: torch.Tensor | None = None) -> torch.Tensor:
    """Style-modulated convolution (plus bias), computed by scaling activations instead of weights.

    x [N, I, H, W], weight [O, I, k, k], styles [N, I], bias [O] -> [N, O, H + 2p - k + 1, ...].
    Modulating the input channels, convolving with the shared weight and demodulating the output
    channels equals a grouped convolution with per-sample weights, at the cost of one ordinary
    convolution. The style normalisation is per sample (NVIDIA uses one scalar for the whole
    batch); demodulation cancels it except inside the 1e-8 epsilon, so the two agree to float32
    precision and our outputs do not depend on what else is in the batch. NVIDIA's weight
    pre-normalisation (w / rms over (i, kh, kw), per output channel) is a per-output-channel factor
    too: it is folded into the demodulation scale, which is applied together with the bias in one
    pass over the output (a full-size pass costs as much as a small convolution here).
    """
    if demodulate:
        w_sq = weight.square().sum(dim=[2, 3])  # [O, I]: sum over (kh, kw) of w^2
        w_gain_sq = w_sq.shape[1] * weight.shape[2] * weight.shape[3] / w_sq.sum(dim=1)  # [O]: 1 / mean(w^2)
        styles = styles * styles.square().mean(dim=1, keepdim=True).rsqrt()
        # sum over (i, kh, kw) of (gain_o * w[o,i] * s[n,i])^2; elementwise, since [N, O, I] is small
        # and a tiny multi-threaded GEMM costs a thread synchronisation per call.
        energy = (styles.square()[:, None, :] * w_sq[None]).sum(dim=2) * w_gain_sq  # [N, O]
        out_scale = (energy + 1e-8).rsqrt() * w_gain_sq.sqrt()  # demodulation x weight normalisation
    scale = styles if input_gain is None else styles * input_gain
    x = F.conv2d(x * scale[:, :, None, None], weight, padding=padding)
    if demodulate:
        if bias is None:
            return x * out_scale[:, :, None, None]
        return torch.addcmul(bias[None, :, None, None], x, out_scale[:, :, None, None])
    return x if bias is None else x + bias[None, :, None, None]


def filtered_lrelu(x: torch.Tensor, bias: torch.Tensor | None, *, up_filter: torch.Tensor | None,
                   down_filter: torch.Tensor | None, up: int, down: int, padding: tuple[int, int, int, int],
                   gain: float, slope: float, clamp: float | None) -> torch.Tensor:
    """Bias, upsample, leaky ReLU (times gain), clamp, downsample; same arguments and result as
    `reference_filtered_lrelu`, but neither the inserted zeros nor the discarded samples are computed.

    x [N, C, H, W]; up_filter 1-D (separable); down_filter 1-D, or 2-D for StyleGAN3-R's radial
    filters; padding (x0, x1, y0, y1) at the upsampled rate. Upsampling is a strided depthwise
    transposed convolution per axis, downsampling a strided depthwise convolution; both run in
    the channels-last layout, where oneDNN's depthwise kernels are fastest. Returns a
    channels-last tensor (a memory layout only: values and indexing are those of NCHW).
    bias None: already added (modulated_conv2d adds it in its last pass).
    """
    x = _channels_last(x if bias is None else x + bias[None, :, None, None])
    x = upsample2d(x, up_filter, up, padding, gain=up ** 2)
    # The upsampled tensor is the largest temporary: work on it in place unless autograd needs it.
    inplace = not (torch.is_grad_enabled() and x.requires_grad)
    if slope != 1:
        x = F.leaky_relu(x, slope, inplace=inplace)
    if clamp is not None:
        # clamp(gain * y, c) == gain * clamp(y, c / gain); the gain is applied while downsampling.
        x = x.clamp_(-clamp / gain, clamp / gain) if inplace else x.clamp(-clamp / gain, clamp / gain)
    return downsample2d(x, down_filter, down, gain=gain)


def upsample2d(x: torch.Tensor, f: torch.Tensor | None, up: int, padding: tuple[int, int, int, int],
               gain: float = 1.0) -> torch.Tensor:
    """upfirdn2d's upsampling (insert zeros, pad/crop, separable filter f, times gain) of x [N, C, H, W].

    One depthwise transposed convolution with stride `up` per axis: each input sample adds a
    scaled copy of the filter to the output, so no inserted zero is multiplied.
    """
    n, c, h, w = x.shape
    f = _taps(f, x)
    taps = f.shape[0]
    x0, x1, y0, y1 = padding
    pre_w0, pre_w1, pad_w, crop_w0, crop_w1 = transposed_conv_crop(w, taps, up, x0, x1)
    pre_h0, pre_h1, pad_h, crop_h0, crop_h1 = transposed_conv_crop(h, taps, up, y0, y1)
    if pre_w0 or pre_w1 or pre_h0 or pre_h1:
        x = _channels_last(F.pad(x, [pre_w0, pre_w1, pre_h0, pre_h1]))
    f = f * (gain ** 0.5)  # half the gain on each axis
    # Rows first: oneDNN's kernel along W costs less per output sample, so it gets the larger output.
    if up > 1 or taps > 1 or pad_h:
        x = F.conv_transpose2d(x, f.view(1, 1, taps, 1).expand(c, 1, taps, 1), stride=(up, 1),
                               padding=(pad_h, 0), groups=c)
    if up > 1 or taps > 1 or pad_w:
        x = F.conv_transpose2d(x, f.view(1, 1, 1, taps).expand(c, 1, 1, taps), stride=(1, up),
                               padding=(0, pad_w), groups=c)
    if crop_w0 or crop_w1 or crop_h0 or crop_h1:
        x = x[:, :, crop_h0: x.shape[2] - crop_h1, crop_w0: x.shape[3] - crop_w1]
    return x


def downsample2d(x: torch.Tensor, f: torch.Tensor | None, down: int, gain: float = 1.0) -> torch.Tensor:
    """upfirdn2d's downsampling of x [N, C, H, W]: filter f (1-D separable or 2-D), times gain, keep every
    `down`-th sample; a strided depthwise convolution that computes only the kept samples."""
    c = x.shape[1]
    f = _taps(f, x)
    if f.ndim == 2:
        f = f.flip([0, 1]) * gain
        return F.conv2d(x, f[None, None].expand(c, 1, *f.shape), stride=down, groups=c)
    taps = f.shape[0]
    f = f.flip(0)
    if down > 1 or taps > 1:  # columns first: the cheaper kernel (see upsample2d) gets the larger input
        x = F.conv2d(x, (f * gain).view(1, 1, 1, taps).expand(c, 1, 1, taps), stride=(1, down), groups=c)
        return F.conv2d(x, f.view(1, 1, taps, 1).expand(c, 1, taps, 1), stride=(down, 1), groups=c)
    return x * gain if gain != 1 else x


def _taps(f: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """The filter in x's dtype and device; None (NVIDIA's identity filter) as one unit tap."""
    if f is None:
        return torch.ones(1, dtype=x.dtype, device=x.device)
    return f.to(x.dtype)


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


# ----------------------------------------------------------------------------------------------
# Reference formulation: literal and slow, for tests and benchmarks only.

def reference_modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, *,
                               demodulate: bool, input_gain: torch.Tensor | None, padding: int) -> torch.Tensor:
    """Grouped convolution with a separate modulated weight per sample (NVIDIA's formulation)."""
    batch = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    if demodulate:
        weight = weight * weight.square().mean(dim=[1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean().rsqrt()  # one scalar for the whole batch
    w = weight.unsqueeze(0) * styles[:, None, :, None, None]  # [N, O, I, k, k]
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()[:, :, None, None, None]
    if input_gain is not None:
        w = w * input_gain
    x = x.reshape(1, batch * in_channels, *x.shape[2:])
    x = F.conv2d(x, w.reshape(batch * out_channels, in_channels, kh, kw), padding=padding, groups=batch)
    return x.reshape(batch, out_channels, *x.shape[2:])


def reference_upfirdn2d(x: torch.Tensor, f: torch.Tensor | None, up: int = 1, down: int = 1,
                        padding: tuple[int, int, int, int] = (0, 0, 0, 0), gain: float = 1.0) -> torch.Tensor:
    """Insert zeros, pad/crop, convolve at the upsampled rate, then keep every `down`-th sample."""
    n, c, h, w = x.shape
    if f is None:
        f = torch.ones(1, 1, dtype=x.dtype, device=x.device)
    px0, px1, py0, py1 = padding
    x = x.reshape(n, c, h, 1, w, 1)
    x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
    x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    f = (f * gain ** (f.ndim / 2)).to(x.dtype).flip(list(range(f.ndim)))
    f = f[None, None].repeat([c, 1] + [1] * f.ndim)
    if f.ndim == 4:
        x = F.conv2d(x, f, groups=c)
    else:
        x = F.conv2d(x, f.unsqueeze(2), groups=c)
        x = F.conv2d(x, f.unsqueeze(3), groups=c)
    return x[:, :, ::down, ::down]


def reference_filtered_lrelu(x: torch.Tensor, bias: torch.Tensor, *, up_filter: torch.Tensor | None,
                             down_filter: torch.Tensor | None, up: int, down: int,
                             padding: tuple[int, int, int, int], gain: float, slope: float,
                             clamp: float | None) -> torch.Tensor:
    """NVIDIA's reference filtered leaky ReLU: everything at the full upsampled resolution."""
    x = x + bias[None, :, None, None]
    x = reference_upfirdn2d(x, up_filter, up=up, padding=padding, gain=up ** 2)
    x = F.leaky_relu(x, slope) * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return reference_upfirdn2d(x, down_filter, down=down)


@contextlib.contextmanager
def use_reference_ops(generator: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Run `generator` with the naive reference ops inside the block (restored afterwards)."""
    layers = [m for m in generator.modules() if hasattr(m, "use_reference_ops")]
    previous = [layer.use_reference_ops for layer in layers]
    try:
        for layer in layers:
            layer.use_reference_ops = True
        yield generator
    finally:
        for layer, value in zip(layers, previous):
            layer.use_reference_ops = value
