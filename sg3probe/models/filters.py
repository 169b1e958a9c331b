"""Low-pass filter design and the index arithmetic of resampling with those filters (upfirdn).

A FIR resampling step (insert zeros, pad or crop, filter, keep every n-th sample) is computed
without the zeros and without the discarded samples: upsampling as a strided transposed
convolution (each input sample scatters one copy of the filter), downsampling as a strided
convolution (only kept outputs are computed). `resampling_matrix` writes one axis of it as a
dense [out, in] matrix, the definition that tests compare against.
"""
from __future__ import annotations

import numpy as np
import scipy.signal
import scipy.special
import torch


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float, radial: bool = False) -> torch.Tensor | None:
    """Kaiser-windowed low-pass filter as StyleGAN3 designs it; None stands for identity (1 tap)."""
    assert numtaps >= 1
    if numtaps == 1:
        return None
    if not radial:
        taps = scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs)
        return torch.as_tensor(taps, dtype=torch.float32)
    # Radial (2-D, rotation-invariant) filter: a jinc windowed by a separable Kaiser window.
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(x, x))
    taps = scipy.special.j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2)))
    window = np.kaiser(numtaps, beta)
    taps = taps * np.outer(window, window)
    taps = taps / np.sum(taps)
    return torch.as_tensor(taps, dtype=torch.float32)


def output_length(in_length: int, up: int, down: int, pad0: int, pad1: int, taps: int) -> int:
    """Samples left after zero insertion by `up`, padding, a `taps`-long filter and decimation."""
    filtered = in_length * up + pad0 + pad1 - taps + 1
    return (filtered + down - 1) // down


def resampling_matrix(filter_1d: torch.Tensor | None, in_length: int, up: int = 1, down: int = 1,
                      pad0: int = 0, pad1: int = 0, gain: float = 1.0) -> torch.Tensor:
    """The [out, in] matrix of one axis of upfirdn (up, pad/crop, convolve with the filter, down).

    out[o] = sum_i x[i] * gain * f[L - 1 - (up * i + pad0 - down * o)], the true convolution
    with the zero-inserted, padded signal (negative padding crops), which is what the reference
    computes; symmetric filters make the flip immaterial, but it is kept exact.
    """
    taps = torch.ones(1, dtype=torch.float64) if filter_1d is None else filter_1d.detach().to(torch.float64).cpu()
    assert taps.ndim == 1
    length = taps.shape[0]
    n_out = output_length(in_length, up, down, pad0, pad1, length)
    o = torch.arange(n_out).unsqueeze(1)  # [out, 1]
    i = torch.arange(in_length).unsqueeze(0)  # [1, in]
    k = length - 1 - (up * i + pad0 - down * o)  # [out, in] tap index
    valid = (k >= 0) & (k < length)
    matrix = torch.where(valid, taps[k.clamp(0, length - 1)], torch.zeros((), dtype=torch.float64))
    return (matrix * gain).to(torch.float32)


def transposed_conv_crop(in_length: int, taps: int, up: int, pad0: int, pad1: int) -> tuple[int, int, int, int, int]:
    """How to get one axis of upfirdn's upsampling (up, pad/crop, filter) from a strided transposed conv.

    A transposed convolution with stride `up` and a `taps`-long kernel computes every output of the
    zero-inserted, fully padded signal, (in_length - 1) * up + taps samples, without touching the
    inserted zeros. upfirdn's output starts `taps - 1 - pad0` samples into it. Returns
    (pre0, pre1, padding, extra0, extra1): zero samples to add to the input first (only where
    the padding exceeds a full convolution's), the symmetric `padding` argument of
    conv_transpose, and what is left to crop at each end afterwards.
    """
    n_out = output_length(in_length, up, 1, pad0, pad1, taps)
    full = (in_length - 1) * up + taps
    crop0 = taps - 1 - pad0
    crop1 = full - crop0 - n_out
    pre0, pre1 = max(0, -(crop0 // up)), max(0, -(crop1 // up))  # ceil(-crop / up) input samples
    crop0, crop1 = crop0 + pre0 * up, crop1 + pre1 * up
    padding = min(crop0, crop1)
    return pre0, pre1, padding, crop0 - padding, crop1 - padding
