"""The StyleSpace protocol: per-attribute extreme samples, and the metrics learnt on them."""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from sg3probe_disentanglement.metrics.dci import _dci_from_splits, _distinct_columns, _FactorSplit
from sg3probe_disentanglement.metrics.inputs import (AttributeSubsets, DCIResult, MetricInputError, MIGResult,
                                                     SAPResult, Threshold, _as_codes, _as_names,
                                                     _check_at_least_two_codes)
from sg3probe_disentanglement.metrics.mig import _check_n_bins, _mig_of_factor, _mig_result
from sg3probe_disentanglement.metrics.sap import _sap_accuracy_of_factor, _sap_result

def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _check_in_range(
    value, name: str, low: float, high: float, *, closed_low: bool = False, closed_high: bool = False
) -> float:
    """value as a float in the interval low..high (open ends unless closed_*), or MetricInputError."""
    ok = _is_number(value)
    ok = ok and (low <= value if closed_low else low < value)
    ok = ok and (value <= high if closed_high else value < high)
    if not ok:
        interval = f"{'[' if closed_low else '('}{low}, {high}{']' if closed_high else ')'}"
        raise MetricInputError(f"{name} must be a number in {interval}, got {value!r}.")
    return float(value)


def _resolve_threshold(threshold, values: np.ndarray, name: str) -> float:
    if threshold == "median":
        return float(np.median(values))
    if not _is_number(threshold):
        raise MetricInputError(
            f"threshold of attribute {name!r} must be a number or 'median', got {threshold!r}."
        )
    return float(threshold)


def _stratified_split(
    indices: np.ndarray, labels: np.ndarray, train_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle each class of `indices` and cut it at train_fraction -> sorted (train, test) indices."""
    train, test = [], []
    for label in (False, True):
        members = rng.permutation(indices[labels == label])
        n_train = min(max(int(members.size * train_fraction + 0.5), 1), members.size - 1)
        train.append(members[:n_train])
        test.append(members[n_train:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def select_attribute_subsets(
    scores,
    names: Sequence[str] | None = None,
    *,
    percentile: float = 2.0,
    threshold: Threshold | Sequence[Threshold] = 0.0,
    min_side_fraction: float = 0.05,
    train_fraction: float = 0.5,
    random_state: int = 0,
) -> AttributeSubsets:
    """The StyleSpace attribute protocol: filter attributes, keep their extremes, split them.

    For each attribute (column of scores [N, A]): label = score > threshold. The attribute is
    kept only if more than `min_side_fraction` (5 %) of all samples are on each side. Its
    samples are those at or below the `percentile`-th (2nd) or at or above the
    (100 - percentile)-th (98th) percentile of its scores, which the 5 % rule guarantees to be
    labelled False and True respectively; they are split `train_fraction` (50/50) into train
    and test within each label, so both sides reach both halves. Each attribute's split is
    seeded by random_state and its name alone: adding or dropping another attribute changes nothing.

    `threshold` is 0.0 for classifier logits. For continuous attributes with no natural zero
    (a size, a hue) pass "median": the label is then "above the attribute's median", the 5 %
    rule only rejects attributes with heavy ties at the median, and the same 2 % extremes are
    used. A sequence gives one threshold per attribute, to mix logits and continuous values.
    An attribute with fewer than 2 extreme samples on a side (too few samples) is dropped too.
    """
    values = np.asarray(scores)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2 or values.shape[0] == 0 or values.dtype.kind not in "biuf":
        raise MetricInputError(
            "scores must be a numeric array [samples, attributes], "
            f"got shape {values.shape} of {values.dtype}."
        )
    if not np.isfinite(values).all():
        raise MetricInputError("scores contain NaN or infinite values; drop those samples first.")
    n_samples, n_attributes = values.shape
    names = _as_names(names, n_attributes, "attribute")
    percentile = _check_in_range(percentile, "percentile", 0.0, 50.0, closed_high=True)
    min_side_fraction = _check_in_range(min_side_fraction, "min_side_fraction", 0.0, 0.5, closed_low=True)
    train_fraction = _check_in_range(train_fraction, "train_fraction", 0.0, 1.0)
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)) or random_state < 0:
        raise MetricInputError(f"random_state must be a non-negative integer, got {random_state!r}.")
    if isinstance(threshold, str) or not isinstance(threshold, Sequence):
        thresholds = [threshold] * n_attributes
    elif len(threshold) == n_attributes:
        thresholds = list(threshold)
    else:
        raise MetricInputError(f"got {len(threshold)} thresholds for {n_attributes} attributes.")

    kept_names, train_indices, test_indices, train_labels, test_labels, rows = [], [], [], [], [], []
    for a, name in enumerate(names):
        column = values[:, a].astype(np.float64)  # [samples]
        cut = _resolve_threshold(thresholds[a], column, name)
        positive_fraction = float((column > cut).mean())
        low_cut, high_cut = np.percentile(column, [percentile, 100.0 - percentile])
        extreme = np.flatnonzero((column <= low_cut) | (column >= high_cut))  # [extremes]
        labels = column[extreme] > cut  # [extremes]
        n_low, n_high = int((~labels).sum()), int(labels.sum())
        row = dict(
            attribute=name, threshold=cut, positive_fraction=positive_fraction,
            low_cut=float(low_cut), high_cut=float(high_cut), n_train=0, n_test=0, dropped="",
        )
        side = min(positive_fraction, 1.0 - positive_fraction)
        if side <= min_side_fraction:
            row["dropped"] = (
                f"{100 * positive_fraction:.1f}% of samples above the threshold {cut:g}; "
                f"needs more than {100 * min_side_fraction:g}% on each side"
            )
        elif min(n_low, n_high) < 2:
            row["dropped"] = (
                f"too few extreme samples ({n_low} below, {n_high} above the threshold); "
                "needs at least 2 on each side, use more samples"
            )
        else:
            # Seeded by the attribute's name, not its position, so that selecting another set of
            # attributes leaves this one's split unchanged.
            rng = np.random.default_rng([int(random_state), *name.encode("utf-8")])
            train, test = _stratified_split(extreme, labels, train_fraction, rng)
            kept_names.append(name)
            train_indices.append(train)
            test_indices.append(test)
            train_labels.append(column[train] > cut)
            test_labels.append(column[test] > cut)
            row.update(n_train=train.size, n_test=test.size)
        rows.append(row)
    return AttributeSubsets(
        names=tuple(kept_names),
        train_indices=tuple(train_indices),
        test_indices=tuple(test_indices),
        train_labels=tuple(train_labels),
        test_labels=tuple(test_labels),
        n_samples=n_samples,
        selection=pd.DataFrame(rows).set_index("attribute"),
    )


class _AttributeSplit(NamedTuple):
    """One kept attribute's rows in the compacted codes, and its labels."""

    train_rows: np.ndarray  # [n_train]
    test_rows: np.ndarray  # [n_test]
    train_labels: np.ndarray  # [n_train] bool
    test_labels: np.ndarray  # [n_test] bool


def _codes_of_subsets(codes, subsets: AttributeSubsets) -> tuple[np.ndarray, list[_AttributeSplit]]:
    """The rows of codes [N, D] that some attribute uses [used, D], and each attribute's rows in them.

    The protocol keeps ~4 % of the samples per attribute, so only those rows are read and
    converted: codes may be a float16 memory map of 100k S samples.
    """
    if not isinstance(subsets, AttributeSubsets):
        raise MetricInputError(
            f"subsets must come from select_attribute_subsets, got {type(subsets).__name__}."
        )
    if not subsets.names:
        dropped = "; ".join(f"{name}: {reason}" for name, reason in subsets.dropped.items())
        raise MetricInputError(f"no attribute passed the attribute filter ({dropped}).")
    if np.ndim(codes) != 2 or np.shape(codes)[0] != subsets.n_samples:
        raise MetricInputError(
            f"codes of shape {np.shape(codes)} do not match the attribute subsets, selected from "
            f"{subsets.n_samples} samples; pass codes [samples, codes] of the same samples as the scores."
        )
    used = np.unique(np.concatenate(subsets.train_indices + subsets.test_indices))  # [used]
    compact = _as_codes(np.asarray(codes)[used], "codes")  # [used, codes]
    splits = [
        _AttributeSplit(np.searchsorted(used, train), np.searchsorted(used, test), train_labels, test_labels)
        for train, test, train_labels, test_labels in zip(
            subsets.train_indices, subsets.test_indices, subsets.train_labels, subsets.test_labels
        )
    ]
    return compact, splits


def dci_per_attribute_subsets(
    codes,
    subsets: AttributeSubsets,
    *,
    n_jobs: int | None = None,
    random_state: int = 0,
    max_features: int | float | str | None = None,
    subsample: float = 1.0,
) -> DCIResult:
    """DCI of codes [N, D] where attribute j's classifier sees only attribute j's own samples.

    Column j of R is the importance vector of attribute j's classifier, fitted on its subset;
    D, C and I are then computed from R exactly as for shared samples (the canonical form
    already fits one classifier per factor, so only each classifier's training set differs).
    Options, and the sharing of importance among identical codes, as in `dci`; codes count as
    identical when they are equal on every sample that some attribute uses.
    """
    codes, attribute_splits = _codes_of_subsets(codes, subsets)
    codes = codes.astype(np.float32, copy=False)
    distinct = _distinct_columns(codes)
    codes = codes[:, distinct.keep]
    splits = [
        _FactorSplit(codes[split.train_rows], split.train_labels, codes[split.test_rows], split.test_labels)
        for split in attribute_splits
    ]
    return _dci_from_splits(
        splits, subsets.names, distinct, n_jobs=n_jobs, random_state=random_state,
        max_features=max_features, subsample=subsample,
    )


def mig_per_attribute_subsets(codes, subsets: AttributeSubsets, *, n_bins: int = 20) -> MIGResult:
    """MIG of codes [N, D] with attribute j measured on its own samples (train and test together).

    MIG has no train/test; the bins of each code span its range over attribute j's samples.
    """
    n_bins = _check_n_bins(n_bins)
    codes, attribute_splits = _codes_of_subsets(codes, subsets)
    _check_at_least_two_codes(codes, "MIG")
    per_factor = [
        _mig_of_factor(
            codes[np.concatenate([split.train_rows, split.test_rows])],
            np.concatenate([split.train_labels, split.test_labels]),
            n_bins,
        )
        for split in attribute_splits
    ]
    return _mig_result(per_factor, n_bins, subsets.names)


def sap_per_attribute_subsets(codes, subsets: AttributeSubsets, *, standardize: bool = True) -> SAPResult:
    """SAP of codes [N, D] with attribute j's SVMs trained and tested on its own split (see `sap`)."""
    codes, attribute_splits = _codes_of_subsets(codes, subsets)
    _check_at_least_two_codes(codes, "SAP")
    accuracies = [
        _sap_accuracy_of_factor(
            codes[split.train_rows], split.train_labels,
            codes[split.test_rows], split.test_labels,
            standardize,
        )
        for split in attribute_splits
    ]
    return _sap_result(accuracies, subsets.names)
