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


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, *, demodulate: bool,
                     input_gain: torch.Tensor | None, padding: int) -> torch.Tensor:
    """Style-modulated convolution, computed by scaling activations instead of weights.

    x [N, I, H, W], weight [O, I, k, k], styles [N, I] -> [N, O, H + 2p - k + 1, ...].
    Modulating the input channels, convolving with the shared weight and demodulating the output
    channels equals a grouped convolution with per-sample weights, at the cost of one ordinary
    convolution. The style normalisation is per sample (NVIDIA uses one scalar for the whole
    batch); demodulation cancels it except inside the 1e-8 epsilon, so the two agree to float32
    precision and our outputs do not depend on what else is in the batch.
    """
    if demodulate:
        weight = weight * weight.square().mean(dim=[1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean(dim=1, keepdim=True).rsqrt()
        # sum over (i, kh, kw) of (w[o,i] * s[n,i])^2, as one [N, I] x [I, O] product.
        dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()  # [N, O]
    scale = styles if input_gain is None else styles * input_gain
    x = x * scale[:, :, None, None]
    x = F.conv2d(x, weight, padding=padding)
    if demodulate:
        x = x * dcoefs[:, :, None, None]
    return x


def filtered_lrelu(x: torch.Tensor, bias: torch.Tensor, *, up_h: torch.Tensor, up_w: torch.Tensor,
                   down_h: torch.Tensor, down_w: torch.Tensor, gain: float, slope: float,
                   clamp: float | None) -> torch.Tensor:
    """Bias, upsample, leaky ReLU, clamp, downsample, with resampling as matrix products.

    up_h [Ht, H], up_w [Wt, W]: upsampling (zero insertion, padding, the up filter and its gain).
    down_h [Ho, r*Ht], down_w [r*Wo, Wt]: decimating down filter as r separable terms (r = 1 for
    1-D filters, 3-4 for StyleGAN3-R's radial ones; see filters.downsampling_matrices).
    Only the kept output samples are ever computed.
    """
    x = x + bias[None, :, None, None]
    x = up_h @ (x @ up_w.t())  # [N, C, Ht, Wt]
    # The upsampled tensor is the largest temporary: work on it in place unless autograd needs it.
    inplace = not (torch.is_grad_enabled() and x.requires_grad)
    if slope != 1:
        x = F.leaky_relu(x, slope, inplace=inplace)
    if clamp is not None:
        # clamp(gain * y, c) == gain * clamp(y, c / gain); the gain is applied while downsampling.
        x = x.clamp_(-clamp / gain, clamp / gain) if inplace else x.clamp(-clamp / gain, clamp / gain)
    terms = down_h.shape[1] // x.shape[2]
    x = x @ down_w.t()  # [N, C, Ht, r*Wo]
    if terms > 1:
        n, c, h, w = x.shape
        x = x.reshape(n, c, h, terms, w // terms).permute(0, 1, 3, 2, 4).reshape(n, c, terms * h, w // terms)
    return (down_h * gain) @ x


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
