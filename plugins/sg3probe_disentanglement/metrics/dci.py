"""DCI: disentanglement, completeness and informativeness from gradient-boosted trees importances."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import joblib
import numpy as np
from sklearn.ensemble import GradientBoostingClassifier

from sg3probe_disentanglement.metrics.inputs import (DCIResult, DisentanglementCompleteness, MetricInputError,
                                                     _as_names, _as_train_test, _check_classes)

ENTROPY_EPSILON = 1e-11  # added to importances before every entropy (disentanglement_lib)


def _normalized_entropy(weights: np.ndarray, base: int) -> np.ndarray:
    """Entropy in `base` of each row of weights [rows, outcomes], after adding 1e-11 and normalising."""
    if base == 1:
        # A single outcome carries no uncertainty; log base 1 would divide 0 by 0.
        return np.zeros(weights.shape[0])
    probabilities = weights + ENTROPY_EPSILON
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
    return -(probabilities * np.log(probabilities)).sum(axis=1) / math.log(base)


def disentanglement_completeness(importance) -> DisentanglementCompleteness:
    """D and C of an importance matrix R [codes, factors] (Eastwood & Williams).

    D_i = 1 - H_K(R_i. / sum_j R_ij) with K = #factors, D = sum_i rho_i D_i with
    rho_i = sum_j R_ij / sum R; C_j = 1 - H_D(R_.j / sum_i R_ij) with D = #codes,
    C = sum_j rho_j C_j. |R| is used; an all-zero R counts as all ones. With one factor every
    D_i is 1, with one code every C_j is 1 (an entropy over one outcome is 0).
    """
    matrix = np.abs(np.asarray(importance, dtype=np.float64))  # [codes, factors]
    if matrix.ndim != 2 or matrix.size == 0 or not np.isfinite(matrix).all():
        raise MetricInputError(
            f"importance must be a finite non-empty 2-D array [codes, factors], got shape {matrix.shape}."
        )
    if matrix.sum() == 0:
        matrix = np.ones_like(matrix)
    n_codes, n_factors = matrix.shape
    code_disentanglement = 1.0 - _normalized_entropy(matrix, base=n_factors)  # [codes]
    factor_completeness = 1.0 - _normalized_entropy(matrix.T, base=n_codes)  # [factors]
    code_weights = matrix.sum(axis=1) / matrix.sum()  # [codes]
    factor_weights = matrix.sum(axis=0) / matrix.sum()  # [factors]
    return DisentanglementCompleteness(
        disentanglement=float(code_disentanglement @ code_weights),
        completeness=float(factor_completeness @ factor_weights),
        code_disentanglement=code_disentanglement,
        code_weights=code_weights,
        factor_completeness=factor_completeness,
        factor_weights=factor_weights,
    )


class _DistinctColumns(NamedTuple):
    """Which code columns are exact copies of an earlier one, and how to share importance back."""

    keep: np.ndarray  # [distinct] first column of each group of identical columns, in input order
    owner: np.ndarray  # [codes] index into keep of the column each code copies
    copies: np.ndarray  # [distinct] how many codes each kept column stands for

    def spread(self, importance: np.ndarray) -> np.ndarray:
        """Importance of the kept columns [distinct, factors] -> of every code [codes, factors],
        each group's importance split in equal shares among its copies."""
        return (importance / self.copies[:, None])[self.owner]


def _distinct_columns(*blocks: np.ndarray) -> _DistinctColumns:
    """The identical-column groups of the row-wise concatenation of blocks, each [rows, codes]."""
    codes = np.concatenate(blocks, axis=0) if len(blocks) > 1 else blocks[0]  # [rows, codes]
    _, first, inverse, counts = np.unique(
        codes, axis=1, return_index=True, return_inverse=True, return_counts=True
    )
    order = np.argsort(first)  # np.unique sorts the columns by value; restore input order
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return _DistinctColumns(keep=first[order], owner=rank[inverse.reshape(-1)], copies=counts[order])


class _FactorSplit(NamedTuple):
    """One factor's classifier data; factors of the shared form share the code arrays."""

    codes_train: np.ndarray  # [n_train, codes]
    labels_train: np.ndarray  # [n_train]
    codes_test: np.ndarray  # [n_test, codes]
    labels_test: np.ndarray  # [n_test]


def _fit_factor_classifier(split: _FactorSplit, options: dict) -> tuple[np.ndarray, float, float]:
    """Gradient-boosted trees from codes to one factor -> (|importances| [codes], train acc, test acc)."""
    model = GradientBoostingClassifier(**options).fit(split.codes_train, split.labels_train)
    importance = np.abs(model.feature_importances_)  # [codes]; sums to 1 unless no tree split
    train_accuracy = model.score(split.codes_train, split.labels_train)
    test_accuracy = model.score(split.codes_test, split.labels_test)
    return importance, train_accuracy, test_accuracy


def _dci_from_splits(
    splits: Sequence[_FactorSplit],
    factor_names: tuple[str, ...],
    distinct: _DistinctColumns,
    *,
    n_jobs: int | None,
    random_state: int,
    max_features,
    subsample: float,
) -> DCIResult:
    for split, name in zip(splits, factor_names):
        _check_classes(split.labels_train, name, "training")
    options = dict(random_state=random_state, max_features=max_features, subsample=subsample)
    # Threads: sklearn builds trees without the GIL, so threads use every core without copying
    # the codes into worker processes.
    fits = joblib.Parallel(n_jobs=n_jobs, prefer="threads")(
        joblib.delayed(_fit_factor_classifier)(split, options) for split in splits
    )
    importance = distinct.spread(np.stack([fit[0] for fit in fits], axis=1))  # [codes, factors]
    test_accuracy = np.array([fit[2] for fit in fits])  # [factors]
    scores = disentanglement_completeness(importance)
    return DCIResult(
        disentanglement=scores.disentanglement,
        completeness=scores.completeness,
        informativeness=float(test_accuracy.mean()),
        importance=importance,
        code_disentanglement=scores.code_disentanglement,
        code_weights=scores.code_weights,
        factor_completeness=scores.factor_completeness,
        factor_weights=scores.factor_weights,
        train_accuracy=np.array([fit[1] for fit in fits]),
        test_accuracy=test_accuracy,
        n_train=np.array([len(split.labels_train) for split in splits]),
        n_test=np.array([len(split.labels_test) for split in splits]),
        factor_names=factor_names,
    )


def dci(
    codes_train,
    factors_train,
    codes_test,
    factors_test,
    *,
    factor_names: Sequence[str] | None = None,
    n_jobs: int | None = None,
    random_state: int = 0,
    max_features: int | float | str | None = None,
    subsample: float = 1.0,
) -> DCIResult:
    """DCI of codes [N, D] for discrete factors [N, K], every factor learned on the same samples.

    Per factor, a GradientBoostingClassifier (sklearn defaults: 100 trees, learning rate 0.1,
    depth 3) is fitted on the training samples, in parallel over factors (`n_jobs` as in
    joblib/sklearn: None is 1 unless inside a joblib.parallel_config). Column j of R is its
    |feature_importances_|; D and C follow `disentanglement_completeness`; I is the mean test
    accuracy. `max_features` and `subsample` go to the classifier: the defaults are sklearn's
    and the canonical metric; `max_features="sqrt"` fits far faster on S-space codes, but the
    numbers are then not comparable with published ones.

    Codes that are exact copies of another code (W+ sampled without a truncation cutoff is W
    repeated in every layer) are fitted once and their importance is split in equal shares
    among the copies. With every feature tried per split (max_features=None) the trees are the
    same either way, since a copy offers the same splits, and sklearn gives a tie to whichever
    copy comes first in its random feature order: this is the expected R of the canonical fit,
    at 1/copies of its cost, and tiled W+ gets W's D and I. (With max_features below all, the
    features drawn per split differ from a fit on the copies.)
    """
    codes_train, factors_train, codes_test, factors_test = _as_train_test(
        codes_train, factors_train, codes_test, factors_test
    )
    names = _as_names(factor_names, factors_train.shape[1], "factor")
    # sklearn trees work in float32; converting once spares a copy per factor.
    codes_train = codes_train.astype(np.float32, copy=False)
    codes_test = codes_test.astype(np.float32, copy=False)
    distinct = _distinct_columns(codes_train, codes_test)
    codes_train, codes_test = codes_train[:, distinct.keep], codes_test[:, distinct.keep]
    splits = [
        _FactorSplit(codes_train, factors_train[:, j], codes_test, factors_test[:, j])
        for j in range(factors_train.shape[1])
    ]
    return _dci_from_splits(
        splits, names, distinct, n_jobs=n_jobs, random_state=random_state,
        max_features=max_features, subsample=subsample,
    )
