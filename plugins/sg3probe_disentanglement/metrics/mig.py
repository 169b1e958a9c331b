"""MIG: the mutual information gap between the two codes most informative of each factor."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sg3probe_disentanglement.metrics.inputs import (MetricInputError, MIGResult, _as_codes, _as_factors,
                                                     _as_names, _check_at_least_two_codes, _check_classes,
                                                     _column_blocks)

def _discretize(codes: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin index [samples, codes] in n_bins equal-width bins over each code's range (np.histogram bins)."""
    low = codes.min(axis=0)
    span = codes.max(axis=0) - low
    span = np.where(span > 0, span, 1.0)  # a constant code falls in bin 0
    bins = np.floor((codes - low) / span * n_bins).astype(np.int64)
    return np.minimum(bins, n_bins - 1)  # the maximum belongs to the last, closed bin


def _encode_labels(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels [samples] -> codes 0..n_classes-1 [samples] and n_classes."""
    classes, encoded = np.unique(labels, return_inverse=True)
    return encoded.reshape(-1), classes.size


def _mutual_information(bins: np.ndarray, labels: np.ndarray, n_bins: int, n_classes: int) -> np.ndarray:
    """sklearn's mutual_info_score (nats) of each binned code with the labels, vectorised.

    bins [samples, codes] in 0..n_bins-1, labels [samples] in 0..n_classes-1 -> [codes].
    """
    n_samples, n_codes = bins.shape
    cells = bins * n_classes + labels[:, None]  # [samples, codes] joint cell within its code
    cells += np.arange(n_codes) * (n_bins * n_classes)  # each code its own block of cells
    joint = np.bincount(cells.ravel(), minlength=n_codes * n_bins * n_classes)
    joint = joint.reshape(n_codes, n_bins, n_classes) / n_samples  # [codes, bins, classes]
    outer = joint.sum(axis=2, keepdims=True) * joint.sum(axis=1, keepdims=True)  # [codes, bins, classes]
    nonzero = joint > 0
    terms = np.zeros_like(joint)
    terms[nonzero] = joint[nonzero] * np.log(joint[nonzero] / outer[nonzero])
    return np.maximum(terms.sum(axis=(1, 2)), 0.0)


def _mig_of_factor(codes: np.ndarray, labels: np.ndarray, n_bins: int) -> tuple[np.ndarray, float]:
    """-> mutual information [codes] of every binned code with the labels, and H(labels), in nats."""
    encoded, n_classes = _encode_labels(labels)
    information = np.empty(codes.shape[1])  # [codes]
    for block in _column_blocks(*codes.shape):
        bins = _discretize(codes[:, block].astype(np.float64), n_bins)
        information[block] = _mutual_information(bins, encoded, n_bins, n_classes)
    frequencies = np.bincount(encoded) / encoded.size
    entropy = float(-(frequencies * np.log(frequencies)).sum())
    return information, entropy


def _mig_result(per_factor: list[tuple[np.ndarray, float]], n_bins: int, names: tuple[str, ...]) -> MIGResult:
    information = np.stack([item[0] for item in per_factor], axis=1)  # [codes, factors]
    entropy = np.array([item[1] for item in per_factor])  # [factors]
    top_two = -np.sort(-information, axis=0)[:2]  # [2, factors]
    factor_mig = (top_two[0] - top_two[1]) / entropy
    return MIGResult(
        mig=float(factor_mig.mean()),
        factor_mig=factor_mig,
        mutual_information=information,
        factor_entropy=entropy,
        n_bins=n_bins,
        factor_names=names,
    )


def _check_n_bins(n_bins) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 2:
        raise MetricInputError(f"n_bins must be an integer >= 2, got {n_bins!r}.")
    return int(n_bins)


def mig(codes, factors, *, n_bins: int = 20, factor_names: Sequence[str] | None = None) -> MIGResult:
    """Mutual information gap of codes [N, D] for discrete factors [N, K].

    Each code is cut into `n_bins` equal-width bins over its range (np.histogram's bins); I_ij
    is mutual_info_score(binned code i, factor j); MIG_j = (I1 - I2) / H(factor j) with I1, I2
    the two largest I_ij; MIG is the mean over factors.
    """
    n_bins = _check_n_bins(n_bins)
    codes = _as_codes(codes, "codes")
    _check_at_least_two_codes(codes, "MIG")
    factors = _as_factors(factors, codes.shape[0], "factors")
    names = _as_names(factor_names, factors.shape[1], "factor")
    for j, name in enumerate(names):
        _check_classes(factors[:, j], name, "given")
    per_factor = [_mig_of_factor(codes, factors[:, j], n_bins) for j in range(factors.shape[1])]
    return _mig_result(per_factor, n_bins, names)
