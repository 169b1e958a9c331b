"""Low-pass filter design and the resampling matrices that apply them.

A separable FIR resampling step (insert zeros, pad or crop, filter, keep every n-th sample) is a
linear map along one axis, so we write it once as a dense [out, in] matrix and apply it with a
matrix product. That replaces NVIDIA's reference formulation (zero insertion, filtering at the
upsampled resolution, then discarding samples) with one GEMM per axis that computes only the
samples that are kept.
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


def separable_factors(filter_2d: torch.Tensor, rel_tol: float = 1e-7) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Write a 2-D filter as a short sum of separable ones: f = sum_k outer(col_k, row_k).

    StyleGAN3-R's radial filters have numerical rank 3-4 (singular values fall below 1e-7 of
    the largest after that), so a few separable passes reproduce them to float32 precision.
    """
    u, s, vh = torch.linalg.svd(filter_2d.detach().to(torch.float64).cpu())
    keep = int((s > s[0] * rel_tol).sum())
    return [(u[:, k] * s[k].sqrt(), vh[k] * s[k].sqrt()) for k in range(keep)]


def downsampling_matrices(down_filter: torch.Tensor | None, in_length: int, down: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Matrices (rows [out, r*in], cols [r*out, in]) applying a 1-D (r = 1) or 2-D filter with decimation.

    For x [.., in, in]: y = x @ cols.t() gives r stacked column-filtered copies; re-stacked as
    [.., r*in, out] and left-multiplied by `rows`, the r separable terms are summed in one product.
    """
    if down_filter is not None and down_filter.ndim == 2:
        factors = separable_factors(down_filter)
    else:
        taps = None if down_filter is None else down_filter.detach().to(torch.float64)
        factors = [(taps, taps)]
    rows = torch.cat([resampling_matrix(col, in_length, down=down) for col, _ in factors], dim=1)
    cols = torch.cat([resampling_matrix(row, in_length, down=down) for _, row in factors], dim=0)
    return rows, cols
