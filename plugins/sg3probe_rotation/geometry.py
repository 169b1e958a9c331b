"""In-plane geometry of generator outputs: from the model's input layer, from images, from a scorer.

Conventions used throughout (the image convention of sg3probe):
- angles in degrees, positive = the content turns counter-clockwise on screen (y points down);
- translations of images in pixels (dx right, dy down); of the model in fractions of the width;
- a registration of (a, b) says how b arises from a: rotate a about the image centre by
  `angle_deg`, then shift it by `shift_px`.

The model-internal angle atan2(r_s, r_c) of S['input'] and the user transform's angle
(`sg3probe.make_transform`) both turn the content counter-clockwise by that angle
(INTERNAL_ANGLE_SIGN = +1); tests check this against the image-based estimate.

Image arrays are [B, C, H, W] or [B, H, W] (numpy or torch); pairs are registered in a batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

# Image angle = INTERNAL_ANGLE_SIGN * atan2(r_s, r_c) (and * the user transform's angle).
INTERNAL_ANGLE_SIGN = 1.0
_EPS = 1e-12
# Phase correlation divides the cross-power spectrum by |X|**WHITENING. Full whitening (1) lets the
# weak high frequencies of smooth images, which hold mostly the pixel grid's interpolation pattern
# (the same in both images), pull sub-bin peaks towards zero; 0.5 keeps the peak sharp without that
# bias (0.02 deg instead of 0.3-0.7 deg on the r64 conformance textures).
WHITENING = 0.5


@dataclass
class Registration:
    """How images b arise from images a: rotate about the centre, then shift; per pair."""

    angle_deg: np.ndarray  # [B] counter-clockwise on screen
    shift_px: np.ndarray  # [B, 2] (dx right, dy down), in pixels
    confidence: np.ndarray  # [B] height of the final phase-correlation peak, in (0, 1]

    def __len__(self) -> int:
        return len(self.angle_deg)


# -- helpers ----------------------------------------------------------------------------------------

def wrap_degrees(angle: Any) -> np.ndarray:
    """Angles wrapped into [-180, 180)."""
    return (np.asarray(angle, dtype=np.float64) + 180.0) % 360.0 - 180.0


def as_image_batch(images: Any) -> np.ndarray:
    """[B, C, H, W] float64 from a numpy array or torch tensor of [B, C, H, W] or [B, H, W]."""
    if hasattr(images, "detach"):
        images = images.detach().float().cpu().numpy()
    array = np.asarray(images, dtype=np.float64)
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4:
        raise ValueError(f"images must have shape [batch, channels, height, width] or [batch, height, width], "
                         f"got {list(array.shape)}")
    return array


def _centre(height: int, width: int) -> tuple[float, float]:
    # Pixel centres are at 0..n-1; the generator's (and affine_grid's) origin is the middle.
    return (height - 1) / 2.0, (width - 1) / 2.0


def radial_hann(height: int, width: int, radius: float | None = None) -> np.ndarray:
    """A rotation-invariant Hann window [H, W] about the centre, zero beyond `radius` (default H/2)."""
    cy, cx = _centre(height, width)
    radius = min(height, width) / 2.0 if radius is None else radius
    y, x = np.mgrid[:height, :width]
    r = np.hypot(y - cy, x - cx)
    return np.where(r < radius, 0.5 * (1.0 + np.cos(np.pi * r / radius)), 0.0)


def _parabolic_offset(left: np.ndarray, peak: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Sub-bin position of a peak from its two neighbours, in (-0.5, 0.5)."""
    denominator = left - 2.0 * peak + right
    curved = np.abs(denominator) > _EPS  # a flat top has no vertex: keep the bin centre
    offset = np.where(curved, 0.5 * (left - right) / np.where(curved, denominator, 1.0), 0.0)
    return np.clip(offset, -0.5, 0.5)


def _circular_peak(correlation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Peak position (in bins, parabola-refined) and height of circular correlations [B, N]."""
    batch, n = correlation.shape
    index = np.argmax(correlation, axis=1)
    rows = np.arange(batch)
    peak = correlation[rows, index]
    offset = _parabolic_offset(correlation[rows, (index - 1) % n], peak, correlation[rows, (index + 1) % n])
    return index + offset, peak


# -- (a) model-internal geometry --------------------------------------------------------------------

def internal_geometry(G, ws) -> dict[str, np.ndarray]:
    """The learned rotation/translation of ws [B, num_ws, w_dim] from S['input'] (uses ws[:, 0] only).

    Returns angle_deg [B] (image convention) and tx, ty [B] in fractions of the width.
    """
    import torch

    with torch.no_grad():
        ws = torch.as_tensor(ws, dtype=torch.float32, device=G.device)
        return geometry_from_styles(G.styles(ws)["input"])  # [B, 4] normalised (r_c, r_s, t_x, t_y)


def geometry_from_styles(input_styles) -> dict[str, np.ndarray]:
    """The same as `internal_geometry` from S['input'] [B, 4] (normalised r_c, r_s, t_x, t_y)."""
    t = np.asarray(input_styles.detach().cpu() if hasattr(input_styles, "detach") else input_styles,
                   dtype=np.float64)
    angle = INTERNAL_ANGLE_SIGN * np.degrees(np.arctan2(t[:, 1], t[:, 0]))
    return {"angle_deg": angle, "tx": t[:, 2], "ty": t[:, 3]}


# -- sampling and warping ---------------------------------------------------------------------------

def _spline_coefficients(images: np.ndarray) -> np.ndarray:
    """Cubic B-spline coefficients of [B, C, H, W], computed once and sampled many times."""
    out = np.empty_like(images)
    for b in range(images.shape[0]):
        for c in range(images.shape[1]):
            out[b, c] = ndimage.spline_filter(images[b, c], order=3, mode="nearest")
    return out


def _sample(coefficients: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Cubic interpolation of [B, C, H, W] at per-image coordinates ys, xs [B, ...] -> [B, C, ...]."""
    batch, channels = coefficients.shape[:2]
    out = np.empty((batch, channels) + ys.shape[1:])
    for b in range(batch):
        coordinates = np.stack([ys[b], xs[b]])
        for c in range(channels):
            out[b, c] = ndimage.map_coordinates(coefficients[b, c], coordinates, order=3, mode="nearest",
                                                prefilter=False)
    return out


def _source_coordinates(xs: np.ndarray, ys: np.ndarray, angle_deg: np.ndarray, shift_px: np.ndarray,
                        centre: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Where points (xs, ys) [B, ...] of the moved image come from in the original image."""
    cy, cx = centre
    extra = (slice(None),) + (None,) * (xs.ndim - 1)
    radians = np.radians(angle_deg)[extra]
    cos, sin = np.cos(radians), np.sin(radians)
    # Moved pixel p comes from R^-1 (p - c - d) + c; R turns counter-clockwise on screen (y down).
    u, v = xs - cx - shift_px[:, 0][extra], ys - cy - shift_px[:, 1][extra]
    return cos * u - sin * v + cx, sin * u + cos * v + cy


def _warp_coefficients(coefficients: np.ndarray, angle_deg: np.ndarray, shift_px: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    batch, _, height, width = coefficients.shape
    y, x = np.mgrid[:height, :width].astype(np.float64)
    xs, ys = np.broadcast_to(x, (batch, height, width)), np.broadcast_to(y, (batch, height, width))
    source_x, source_y = _source_coordinates(xs, ys, angle_deg, shift_px, _centre(height, width))
    valid = ((source_x >= -0.5) & (source_x <= width - 0.5) & (source_y >= -0.5) & (source_y <= height - 0.5))
    return _sample(coefficients, source_y, source_x), valid.astype(np.float64)


def warp(images: Any, angle_deg: Any, shift_px: Any) -> tuple[np.ndarray, np.ndarray]:
    """Rotate images about the centre by angle_deg [B] then shift by shift_px [B, 2] (cubic).

    Returns the warped images [B, C, H, W] and the mask [B, H, W] of pixels that came from inside
    the source (rotated-in corners are 0 there and filled with the nearest edge value).
    """
    images = as_image_batch(images)
    batch = images.shape[0]
    angles = np.broadcast_to(np.asarray(angle_deg, dtype=np.float64), (batch,))
    shifts = np.broadcast_to(np.asarray(shift_px, dtype=np.float64), (batch, 2))
    return _warp_coefficients(_spline_coefficients(images), angles, shifts)


# -- (b) image-based registration -------------------------------------------------------------------

def _polar_grid(radii: np.ndarray, thetas: np.ndarray, centre: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (xs, ys) [R, T] of a (radius, theta) grid, theta counter-clockwise on screen."""
    cy, cx = centre
    return cx + radii[:, None] * np.cos(thetas)[None, :], cy - radii[:, None] * np.sin(thetas)[None, :]


def _polar(images: np.ndarray, radii: np.ndarray, thetas: np.ndarray, centre: tuple[float, float],
           order: int = 3) -> np.ndarray:
    """Sample [B, C, H, W] on a (radius, theta) grid about centre -> [B, C, R, T]."""
    xs, ys = _polar_grid(radii, thetas, centre)
    coordinates = np.stack([ys, xs])
    batch, channels = images.shape[:2]
    out = np.empty((batch, channels, len(radii), len(thetas)))
    for b in range(batch):
        for c in range(channels):
            out[b, c] = ndimage.map_coordinates(images[b, c], coordinates, order=order, mode="nearest")
    return out


def _angular_phase_correlation(polar_a: np.ndarray, polar_b: np.ndarray, ring_weights: np.ndarray
                               ) -> tuple[np.ndarray, np.ndarray]:
    """Phase correlation along theta of [B, C, R, T] pairs -> (shift in bins [B], peak height [B]).

    ring_weights [R] or [B, R]: the radius (area element), 0 for rings to leave out.
    """
    spectrum_a = np.fft.rfft(polar_a, axis=-1)
    spectrum_b = np.fft.rfft(polar_b, axis=-1)
    # Sum the cross-power over channels and rings (weighted by r, the area element) before
    # normalising: rings and channels with more structure weigh more than noisy ones.
    weights = np.broadcast_to(ring_weights, (polar_a.shape[0], polar_a.shape[2]))[:, None, :, None]
    cross = (spectrum_b * np.conj(spectrum_a) * weights).sum(axis=(1, 2))  # [B, T//2+1]
    cross[:, 0] = 0.0  # the ring means carry no angle
    position, peak = _circular_peak(np.fft.irfft(_whiten(cross, one_sided=True), n=polar_a.shape[-1], axis=-1))  # [B, T]
    return position, peak


def _whiten(cross: np.ndarray, one_sided: bool = False, whitening: float = WHITENING) -> np.ndarray:
    """Cross-power [B, ...] divided by |X|**WHITENING, scaled so that a perfect match peaks at 1.

    `one_sided`: `cross` is an rfft half-spectrum [B, n // 2 + 1] of a length-n signal, n even.
    """
    axes = tuple(range(1, cross.ndim))
    weighted = cross / (np.abs(cross) + _EPS) ** whitening
    magnitude = np.abs(weighted)
    if one_sided:  # the bins between 0 and Nyquist stand for two bins of the full spectrum
        n = 2 * (cross.shape[-1] - 1)
        total = 2 * magnitude.sum(axis=-1, keepdims=True) - magnitude[:, :1] - magnitude[:, -1:]
    else:
        n = int(np.prod(cross.shape[1:]))
        total = magnitude.sum(axis=axes, keepdims=True)
    # The inverse FFT divides by n; the correlation of identical images is then 1 at zero shift.
    return weighted * n / (total + _EPS)


def polar_rotation(a: Any, b: Any, theta_bins: int = 720, max_radius: float | None = None,
                   min_radius: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Rotation of b relative to a about the image centre: (angle_deg [B], confidence [B]).

    Both images are resampled to (theta, r) with `theta_bins` bins over 360 degrees and
    phase-correlated along theta; the peak is refined with a parabola. Only rings inside
    `max_radius` (default: the inscribed circle) are used, so rotated-in corners never count.
    """
    a, b = _pair(a, b)
    _check_bins(theta_bins)
    height, width = a.shape[-2:]
    max_radius = min(height, width) / 2.0 - 1.0 if max_radius is None else max_radius
    radii = np.arange(min_radius, max(max_radius, min_radius + 1.0) + 1e-9, 0.5)
    thetas = 2 * np.pi * np.arange(theta_bins) / theta_bins
    centre = _centre(height, width)
    position, peak = _angular_phase_correlation(_polar(a, radii, thetas, centre), _polar(b, radii, thetas, centre), radii)
    return wrap_degrees(position * 360.0 / theta_bins), peak


def phase_correlation_shift(a: Any, b: Any, weight: np.ndarray | None = None, whitening: float = WHITENING
                            ) -> tuple[np.ndarray, np.ndarray]:
    """Translation of b relative to a: (shift_px [B, 2] as (dx, dy), peak height [B]).

    `weight` [H, W] or [B, H, W] multiplies both images first (a window and a validity mask);
    `whitening` 1 is classic phase correlation, whose peak height is the usual confidence.
    """
    a, b = as_image_batch(a), as_image_batch(b)
    batch, _, height, width = a.shape
    if weight is None:
        weight = radial_hann(height, width)
    weight = np.broadcast_to(weight, (batch, height, width))[:, None]
    # Remove the weighted mean so that the window's own shape does not dominate the spectrum.
    def prepared(images):
        mean = (images * weight).sum(axis=(-2, -1), keepdims=True) / (weight.sum(axis=(-2, -1), keepdims=True) + _EPS)
        return (images - mean) * weight
    spectrum_a = np.fft.fft2(prepared(a))
    spectrum_b = np.fft.fft2(prepared(b))
    cross = (spectrum_b * np.conj(spectrum_a)).sum(axis=1)  # [B, H, W]
    correlation = np.fft.ifft2(_whiten(cross, whitening=whitening)).real  # [B, H, W]
    flat = correlation.reshape(batch, -1).argmax(axis=1)
    iy, ix = np.unravel_index(flat, (height, width))
    rows = np.arange(batch)
    peak = correlation[rows, iy, ix]
    dy = iy + _parabolic_offset(correlation[rows, (iy - 1) % height, ix], peak, correlation[rows, (iy + 1) % height, ix])
    dx = ix + _parabolic_offset(correlation[rows, iy, (ix - 1) % width], peak, correlation[rows, iy, (ix + 1) % width])
    dy = np.where(dy >= height / 2, dy - height, dy)
    dx = np.where(dx >= width / 2, dx - width, dx)
    return np.stack([dx, dy], axis=1), peak


def _log_magnitude(images: np.ndarray) -> np.ndarray:
    """Centred log-magnitude spectra [B, C, H, W] of radially Hann-windowed, zero-mean images."""
    height, width = images.shape[-2:]
    window = radial_hann(height, width)
    mean = (images * window).sum(axis=(-2, -1), keepdims=True) / window.sum()
    spectrum = np.fft.fftshift(np.fft.fft2((images - mean) * window), axes=(-2, -1))
    return np.log1p(np.abs(spectrum))


def fourier_mellin(a: Any, b: Any, theta_bins: int = 720) -> Registration:
    """Rotation and translation of b relative to a (Fourier-Mellin), without refinement.

    The rotation comes from phase correlation of the polar log-magnitude spectra over [0, 180)
    (translation-invariant, so known modulo 180 degrees); theta and theta + 180 are both tried by
    rotating a and phase-correlating with b, and the higher peak gives the angle and the shift.
    """
    a, b = _pair(a, b)
    _check_bins(theta_bins)
    return _fourier_mellin(a, b, _spline_coefficients(a), theta_bins)


def _check_bins(theta_bins: int) -> None:
    if theta_bins < 8 or theta_bins % 4:
        raise ValueError(f"theta_bins must be a multiple of 4 (>= 8), got {theta_bins}")


def _pair(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    a, b = as_image_batch(a), as_image_batch(b)
    if a.shape != b.shape:
        raise ValueError(f"images to register must have the same shape, got {list(a.shape)} and {list(b.shape)}")
    if min(a.shape[-2:]) < 16:
        raise ValueError(f"images must be at least 16 x 16 pixels to register, got {list(a.shape[-2:])}")
    return a, b


def _fourier_mellin(a: np.ndarray, b: np.ndarray, coefficients_a: np.ndarray, theta_bins: int) -> Registration:
    batch, _, height, width = a.shape
    half_bins = theta_bins // 2
    thetas = np.pi * np.arange(half_bins) / half_bins
    radii = np.arange(1.5, min(height, width) / 2.0 - 1.0, 0.5)
    centre = (height // 2, width // 2)  # fftshift puts frequency 0 here
    polar_a = _polar(_log_magnitude(a), radii, thetas, centre, order=1)
    polar_b = _polar(_log_magnitude(b), radii, thetas, centre, order=1)
    position, _ = _angular_phase_correlation(polar_a, polar_b, radii)
    angle = position * 180.0 / half_bins  # the correlation is circular with period 180 degrees
    window = radial_hann(height, width)
    best = None
    for candidate in (wrap_degrees(angle), wrap_degrees(angle + 180.0)):
        rotated, valid = _warp_coefficients(coefficients_a, candidate, np.zeros((batch, 2)))
        shift, peak = phase_correlation_shift(rotated, b, window * valid)
        if best is None:
            best = Registration(candidate, shift, peak)
        else:
            better = peak > best.confidence
            best = Registration(np.where(better, candidate, best.angle_deg),
                                np.where(better[:, None], shift, best.shift_px),
                                np.where(better, peak, best.confidence))
    return best


def register(a: Any, b: Any, refine: int = 3, theta_bins: int = 720) -> Registration:
    """Rotation about the centre and shift taking images a to images b, with sub-degree accuracy.

    Fourier-Mellin gives the first estimate; each refinement measures the residual rotation by
    polar phase correlation about the centre between b and a moved by the estimate (only rings
    that stay inside both images, so rotated-in corners never count), then the residual shift by
    phase correlation with the rotated-in corners masked. Confidence is the peak of classic (fully
    whitened) phase correlation after alignment: near 1 for the same picture moved, low (about
    0.2-0.3) for unrelated pictures.
    """
    a, b = _pair(a, b)
    _check_bins(theta_bins)
    batch, _, height, width = a.shape
    coefficients_a = _spline_coefficients(a)
    estimate = _fourier_mellin(a, b, coefficients_a, theta_bins)
    angle, shift = estimate.angle_deg, estimate.shift_px
    centre = _centre(height, width)
    window = radial_hann(height, width)
    radii = np.arange(2.0, min(height, width) / 2.0 - 1.0 + 1e-9, 1.0)
    thetas = 2 * np.pi * np.arange(theta_bins) / theta_bins
    grid_x, grid_y = _polar_grid(radii, thetas, centre)
    polar_b = _sample(_spline_coefficients(b), np.broadcast_to(grid_y, (batch,) + grid_y.shape),
                      np.broadcast_to(grid_x, (batch,) + grid_x.shape))
    for _ in range(refine):
        # a moved by the estimate, sampled straight on b's polar grid (one interpolation, not two).
        source_x, source_y = _source_coordinates(np.broadcast_to(grid_x, (batch,) + grid_x.shape),
                                                 np.broadcast_to(grid_y, (batch,) + grid_y.shape),
                                                 angle, shift, centre)
        polar_a = _sample(coefficients_a, source_y, source_x)
        # A ring beyond the inscribed circle minus the shift holds content that a never had.
        inside = radii[None, :] <= min(height, width) / 2.0 - 1.0 - np.hypot(*shift.T)[:, None]
        inside[:, :3] = True  # keep a few central rings even for large shifts
        position, _ = _angular_phase_correlation(polar_a, polar_b, radii[None, :] * inside)
        residual = wrap_degrees(position * 360.0 / theta_bins)
        # A residual turn about the centre also turns the shift already applied.
        radians = np.radians(residual)
        cos, sin = np.cos(radians), np.sin(radians)
        shift = np.stack([cos * shift[:, 0] + sin * shift[:, 1], -sin * shift[:, 0] + cos * shift[:, 1]], axis=1)
        angle = wrap_degrees(angle + residual)
        warped, valid = _warp_coefficients(coefficients_a, angle, shift)
        residual_shift, _ = phase_correlation_shift(warped, b, window * valid)
        shift = shift + residual_shift
    warped, valid = _warp_coefficients(coefficients_a, angle, shift)
    _, confidence = phase_correlation_shift(warped, b, window * valid, whitening=1.0)
    return Registration(angle, shift, confidence)


def aligned_distance(a: Any, b: Any, registration: Registration) -> np.ndarray:
    """RMS difference [B] between b and a moved by `registration`, over pixels valid in both."""
    a, b = as_image_batch(a), as_image_batch(b)
    warped, valid = warp(a, registration.angle_deg, registration.shift_px)
    return masked_rms(warped, b, valid * (radial_hann(*a.shape[-2:]) > 0))


def masked_rms(a: Any, b: Any, mask: np.ndarray | None = None) -> np.ndarray:
    """Root-mean-square difference [B] of two image batches over a mask [H, W] or [B, H, W]."""
    a, b = as_image_batch(a), as_image_batch(b)
    mask = np.ones(a.shape[-2:]) if mask is None else mask
    mask = np.broadcast_to(mask, (a.shape[0],) + a.shape[-2:])[:, None]
    squared = ((a - b) ** 2 * mask).sum(axis=(1, 2, 3))
    return np.sqrt(squared / (mask.sum(axis=(1, 2, 3)) * a.shape[1] + _EPS))


def psnr(a: Any, b: Any, mask: np.ndarray | None = None) -> np.ndarray:
    """PSNR [B] in dB of images in [-1, 1] (dynamic range 2, as StyleGAN3's EQ-T / EQ-R)."""
    rms = masked_rms(a, b, mask)
    return 20.0 * np.log10(2.0) - 20.0 * np.log10(np.maximum(rms, 1e-6))


# -- (c) pose scorer --------------------------------------------------------------------------------

def scorer_pose(scorer, images) -> dict[str, np.ndarray] | None:
    """The scorer's pose (angle_deg, tx, ty, each [B]) where it supports 'pose', else None."""
    if scorer is None or not scorer.supports("pose"):
        return None
    pose = scorer.pose(images)
    return {name: np.asarray(pose[name], dtype=np.float64) for name in ("angle_deg", "tx", "ty")}
