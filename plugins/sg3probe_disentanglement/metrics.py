"""Disentanglement metrics of a latent space: DCI, MIG and SAP, and the StyleSpace protocol.

Pure numpy / scikit-learn; the formulas and constants are those of section 3 of
shared/specs/analyses.md (canonical form: disentanglement_lib). Shapes:

    codes    [samples, codes]       a latent space flattened (Z, W, W+ as 16*512, S)
    factors  [samples, factors]     discrete labels (binary in the StyleSpace protocol)
    scores   [samples, attributes]  attribute logits or continuous values, before selection

Two ways to feed the metrics:

- Shared samples: `dci`, `mig`, `sap` learn every factor from the same samples.
- Per-attribute subsets (the StyleSpace protocol): `select_attribute_subsets` picks each
  attribute's own extreme samples and train/test split from the scores alone; then
  `dci_per_attribute_subsets`, `mig_per_attribute_subsets` and `sap_per_attribute_subsets`
  learn factor j from attribute j's samples only. Because the selection does not look at the
  codes, one selection serves every space, and Z, W, W+ and S are scored on the same samples.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Iterator, Sequence
from typing import Literal, NamedTuple, Union

import joblib
import numpy as np
import pandas as pd
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning

from sg3probe.errors import Sg3probeError

__all__ = [
    "MetricInputError",
    "DisentanglementCompleteness",
    "DCIResult",
    "MIGResult",
    "SAPResult",
    "AttributeSubsets",
    "disentanglement_completeness",
    "dci",
    "mig",
    "sap",
    "select_attribute_subsets",
    "dci_per_attribute_subsets",
    "mig_per_attribute_subsets",
    "sap_per_attribute_subsets",
]

ENTROPY_EPSILON = 1e-11  # added to importances before every entropy (disentanglement_lib)
SAP_SVM_C = 0.01  # LinearSVC(C=0.01, class_weight="balanced") of the SAP score
# Elements of a [samples, codes] block processed at once by MIG and SAP: SAP's Newton solver
# holds about ten float64 arrays of this size (16 MB each).
_BLOCK_ELEMENTS = 2**21

Threshold = Union[float, Literal["median"]]


class MetricInputError(Sg3probeError, ValueError):
    """Arrays or options that a disentanglement metric cannot use."""


# ----------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True, eq=False)
class DisentanglementCompleteness:
    """D and C of an importance matrix, with the per-code and per-factor terms."""

    disentanglement: float
    completeness: float
    code_disentanglement: np.ndarray  # [codes] D_i = 1 - H_K(P_i.)
    code_weights: np.ndarray  # [codes] rho_i = sum_j R_ij / sum R
    factor_completeness: np.ndarray  # [factors] C_j = 1 - H_D(R_.j / sum_i R_ij)
    factor_weights: np.ndarray  # [factors] rho_j = sum_i R_ij / sum R


@dataclasses.dataclass(frozen=True, eq=False)
class DCIResult:
    """DCI of one latent space: scores, importance matrix and per-factor classifier accuracies."""

    disentanglement: float
    completeness: float  # entropy base = n_codes: compare C only between equal-size spaces
    informativeness: float  # mean test accuracy (not error) over factors
    importance: np.ndarray  # [codes, factors] R, each column a classifier's feature_importances_
    code_disentanglement: np.ndarray  # [codes] D_i
    code_weights: np.ndarray  # [codes] rho_i
    factor_completeness: np.ndarray  # [factors] C_j
    factor_weights: np.ndarray  # [factors] rho_j
    train_accuracy: np.ndarray  # [factors]
    test_accuracy: np.ndarray  # [factors]
    n_train: np.ndarray  # [factors] training samples of each factor's classifier
    n_test: np.ndarray  # [factors]
    factor_names: tuple[str, ...]

    @property
    def n_codes(self) -> int:
        """Dimensionality of the code: the entropy base of the completeness."""
        return self.importance.shape[0]

    def summary(self) -> dict[str, float | int]:
        """The scalar results, JSON-ready."""
        return {
            "disentanglement": self.disentanglement,
            "completeness": self.completeness,
            "informativeness": self.informativeness,
            "n_codes": self.n_codes,
            "n_factors": len(self.factor_names),
        }

    def factor_table(self) -> pd.DataFrame:
        """One row per factor: completeness, its weight, classifier accuracies, sample counts."""
        return pd.DataFrame(
            {
                "completeness": self.factor_completeness,
                "weight": self.factor_weights,
                "train_accuracy": self.train_accuracy,
                "test_accuracy": self.test_accuracy,
                "n_train": self.n_train,
                "n_test": self.n_test,
            },
            index=pd.Index(self.factor_names, name="factor"),
        )


@dataclasses.dataclass(frozen=True, eq=False)
class MIGResult:
    """Mutual information gap: mean over factors of (I1 - I2) / H(factor)."""

    mig: float
    factor_mig: np.ndarray  # [factors]
    mutual_information: np.ndarray  # [codes, factors] in nats, codes binned
    factor_entropy: np.ndarray  # [factors] in nats
    n_bins: int
    factor_names: tuple[str, ...]


@dataclasses.dataclass(frozen=True, eq=False)
class SAPResult:
    """Separated attribute predictability: mean over factors of the top-1 minus top-2 accuracy."""

    sap: float
    factor_sap: np.ndarray  # [factors]
    accuracy: np.ndarray  # [codes, factors] S_ij, test accuracy of a linear SVM on code i alone
    factor_names: tuple[str, ...]


@dataclasses.dataclass(frozen=True, eq=False)
class AttributeSubsets:
    """Each kept attribute's own extreme samples, binary labels and train/test split.

    Indices index the rows of the scores given to `select_attribute_subsets`, and hence the
    rows of any codes array of the same samples. `selection` has one row per input attribute,
    kept or dropped, with the numbers behind the decision.
    """

    names: tuple[str, ...]  # kept attributes, in input order
    train_indices: tuple[np.ndarray, ...]  # per kept attribute: [n_train] sorted sample indices
    test_indices: tuple[np.ndarray, ...]  # per kept attribute: [n_test]
    train_labels: tuple[np.ndarray, ...]  # per kept attribute: [n_train] bool, score > threshold
    test_labels: tuple[np.ndarray, ...]  # per kept attribute: [n_test] bool
    n_samples: int
    selection: pd.DataFrame  # index: attribute; threshold, positive_fraction, cuts, counts, dropped

    @property
    def dropped(self) -> dict[str, str]:
        """Attribute name -> why it was left out."""
        reasons = self.selection["dropped"]
        return {name: reason for name, reason in reasons.items() if reason}


# ----------------------------------------------------------------------------- validation


def _as_codes(codes, name: str) -> np.ndarray:
    """codes as a finite float array [samples, codes] (float32 kept as is, to save memory)."""
    array = np.asarray(codes)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise MetricInputError(
            f"{name} must be a non-empty 2-D array [samples, codes], got shape {array.shape}; "
            "flatten a latent space first (e.g. W+ to [N, 16 * 512])."
        )
    if array.dtype.kind not in "biuf":
        raise MetricInputError(f"{name} must be numeric, got dtype {array.dtype}.")
    if array.dtype not in (np.float32, np.float64):
        array = array.astype(np.float32 if array.dtype == np.float16 else np.float64)
    if not np.isfinite(array).all():
        raise MetricInputError(f"{name} contains NaN or infinite values; drop those samples first.")
    return array


def _as_factors(factors, n_samples: int, name: str) -> np.ndarray:
    """factors as a 2-D array [samples, factors] of discrete labels."""
    array = np.asarray(factors)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[0] != n_samples or array.shape[1] == 0:
        raise MetricInputError(
            f"{name} must be [samples, factors] (or [samples]) with {n_samples} samples to match "
            f"the codes, got shape {array.shape}."
        )
    if array.dtype.kind == "f" and not (np.isfinite(array).all() and (array == np.round(array)).all()):
        raise MetricInputError(
            f"{name} holds non-integer floats, but factors are discrete labels; for logits or "
            "continuous attributes use select_attribute_subsets, or discretise them first."
        )
    return array


def _as_train_test(codes_train, factors_train, codes_test, factors_test) -> tuple[np.ndarray, ...]:
    """Validated (codes_train, factors_train, codes_test, factors_test) with matching sizes."""
    codes_train = _as_codes(codes_train, "codes_train")
    codes_test = _as_codes(codes_test, "codes_test")
    if codes_train.shape[1] != codes_test.shape[1]:
        raise MetricInputError(
            f"codes_train has {codes_train.shape[1]} codes but codes_test has {codes_test.shape[1]}."
        )
    factors_train = _as_factors(factors_train, codes_train.shape[0], "factors_train")
    factors_test = _as_factors(factors_test, codes_test.shape[0], "factors_test")
    if factors_train.shape[1] != factors_test.shape[1]:
        raise MetricInputError(
            f"factors_train has {factors_train.shape[1]} factors "
            f"but factors_test has {factors_test.shape[1]}."
        )
    return codes_train, factors_train, codes_test, factors_test


def _as_names(names, count: int, default_prefix: str) -> tuple[str, ...]:
    if names is None:
        return tuple(f"{default_prefix}_{index}" for index in range(count))
    names = tuple(str(name) for name in names)
    if len(names) != count:
        raise MetricInputError(f"got {len(names)} names for {count} {default_prefix}s.")
    if len(set(names)) != count:
        raise MetricInputError(f"{default_prefix} names must be unique, got {list(names)}.")
    return names


def _check_classes(labels: np.ndarray, factor_name: str, where: str) -> None:
    if np.unique(labels).size < 2:
        raise MetricInputError(
            f"factor {factor_name!r} takes a single value in the {where} samples; a classifier "
            "needs at least two classes (drop the factor or use more samples)."
        )


def _check_at_least_two_codes(codes: np.ndarray, metric: str) -> None:
    if codes.shape[1] < 2:
        raise MetricInputError(f"{metric} compares the two best codes, so it needs at least 2 codes, got 1.")


def _column_blocks(n_rows: int, n_columns: int) -> Iterator[slice]:
    """Slices of columns such that a [rows, block] float64 array stays near _BLOCK_ELEMENTS."""
    width = max(1, _BLOCK_ELEMENTS // max(n_rows, 1))
    for start in range(0, n_columns, width):
        yield slice(start, min(start + width, n_columns))


# ----------------------------------------------------------------------------- DCI


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
    importance = np.stack([fit[0] for fit in fits], axis=1)  # [codes, factors]
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
    """
    codes_train, factors_train, codes_test, factors_test = _as_train_test(
        codes_train, factors_train, codes_test, factors_test
    )
    names = _as_names(factor_names, factors_train.shape[1], "factor")
    # sklearn trees work in float32; converting once spares a copy per factor.
    codes_train = codes_train.astype(np.float32, copy=False)
    codes_test = codes_test.astype(np.float32, copy=False)
    splits = [
        _FactorSplit(codes_train, factors_train[:, j], codes_test, factors_test[:, j])
        for j in range(factors_train.shape[1])
    ]
    return _dci_from_splits(
        splits, names, n_jobs=n_jobs, random_state=random_state,
        max_features=max_features, subsample=subsample,
    )


# ----------------------------------------------------------------------------- MIG


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


# ----------------------------------------------------------------------------- SAP


def _linear_svm_per_code(
    codes: np.ndarray,
    targets: np.ndarray,
    costs: np.ndarray,
    *,
    tolerance: float = 1e-10,
    max_iter: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact (w, b) [codes] of LinearSVC's primal problem for each code alone, all codes at once.

    codes [samples, codes]; targets [samples] in {-1, +1}; costs [samples] = C * class weight.
    Minimises 0.5 * (w^2 + b^2) + sum_i cost_i * max(0, 1 - t_i (w x_i + b))^2: liblinear's
    squared hinge with the intercept regularised like a weight, as LinearSVC fits it. The
    objective is convex, piecewise quadratic and smooth, so Newton steps on (w, b) with a
    backtracking line search reach the optimum in a few iterations.
    """
    n_codes = codes.shape[1]
    signed = codes * targets[:, None]  # [samples, codes] t_i x_i
    squared = codes * codes  # [samples, codes]
    costs = costs[:, None]  # [samples, 1]
    column_targets = targets[:, None]  # [samples, 1]

    def objective(weight, bias):
        slack = np.maximum(1.0 - signed * weight - column_targets * bias, 0.0)  # [samples, codes]
        return 0.5 * (weight**2 + bias**2) + (costs * slack * slack).sum(axis=0)

    weight = np.zeros(n_codes)
    bias = np.zeros(n_codes)
    value = objective(weight, bias)
    initial_gradient = None
    for _ in range(max_iter):
        slack = 1.0 - signed * weight - column_targets * bias  # [samples, codes]
        active_costs = costs * (slack > 0)  # [samples, codes]
        weighted_slack = active_costs * slack
        gradient_w = weight - 2.0 * np.einsum("nd,nd->d", weighted_slack, signed)
        gradient_b = bias - 2.0 * (weighted_slack * column_targets).sum(axis=0)
        gradient_size = np.maximum(np.abs(gradient_w), np.abs(gradient_b))
        if initial_gradient is None:
            initial_gradient = gradient_size
        converged = gradient_size <= tolerance * (1.0 + initial_gradient)  # [codes]
        if converged.all():
            break
        hessian_ww = 1.0 + 2.0 * np.einsum("nd,nd->d", active_costs, squared)
        hessian_wb = 2.0 * np.einsum("nd,nd->d", active_costs, codes)
        hessian_bb = 1.0 + 2.0 * active_costs.sum(axis=0)
        determinant = hessian_ww * hessian_bb - hessian_wb**2  # > 0: the identity term
        step_w = (hessian_wb * gradient_b - hessian_bb * gradient_w) / determinant
        step_b = (hessian_wb * gradient_w - hessian_ww * gradient_b) / determinant
        decrease = gradient_w * step_w + gradient_b * step_b  # <= 0
        # Converged codes stay put: rounding alone would make their line search fail.
        length = np.where(converged, 0.0, 1.0)
        for _ in range(40):
            new_value = objective(weight + length * step_w, bias + length * step_b)
            rejected = (new_value > value + 1e-4 * length * decrease) & ~converged
            if not rejected.any():
                break
            length = np.where(rejected, length / 2, length)
        weight = weight + length * step_w
        bias = bias + length * step_b
        value = objective(weight, bias)
    else:
        warnings.warn(
            f"SAP's linear SVM did not converge in {max_iter} Newton steps; accuracies may be slightly off.",
            ConvergenceWarning,
            stacklevel=3,
        )
    return weight, bias


def _sap_accuracy_of_factor(
    codes_train: np.ndarray, labels_train: np.ndarray, codes_test: np.ndarray, labels_test: np.ndarray,
    standardize: bool,
) -> np.ndarray:
    """Test accuracy [codes] of LinearSVC(C=0.01, class_weight='balanced') on each code alone."""
    classes, encoded_train = np.unique(labels_train, return_inverse=True)
    encoded_train = encoded_train.reshape(-1)
    n_classes = classes.size
    # Test labels never seen in training can never be predicted: -1 matches no class.
    position = np.searchsorted(classes, labels_test).clip(0, n_classes - 1)
    encoded_test = np.where(classes[position] == labels_test, position, -1)
    class_weight = encoded_train.size / (n_classes * np.bincount(encoded_train))  # sklearn's "balanced"
    if n_classes == 2:
        problems = [(np.where(encoded_train == 1, 1.0, -1.0), SAP_SVM_C * class_weight[encoded_train])]
    else:
        # One-vs-rest as liblinear does it: only the positive class's cost is weighted.
        problems = [
            (
                np.where(encoded_train == k, 1.0, -1.0),
                np.where(encoded_train == k, SAP_SVM_C * class_weight[k], SAP_SVM_C),
            )
            for k in range(n_classes)
        ]
    accuracy = np.empty(codes_train.shape[1])  # [codes]
    for block in _column_blocks(max(codes_train.shape[0], codes_test.shape[0]), codes_train.shape[1]):
        train = codes_train[:, block].astype(np.float64)  # [n_train, block]
        test = codes_test[:, block].astype(np.float64)  # [n_test, block]
        if standardize:
            mean = train.mean(axis=0)
            std = train.std(axis=0)
            std = np.where(std > 0, std, 1.0)
            train = (train - mean) / std
            test = (test - mean) / std
        decisions = []
        for targets, costs in problems:
            weight, bias = _linear_svm_per_code(train, targets, costs)
            decisions.append(test * weight + bias)  # [n_test, block]
        if n_classes == 2:
            predicted = (decisions[0] > 0).astype(np.int64)  # LinearSVC: positive -> classes_[1]
        else:
            predicted = np.argmax(np.stack(decisions), axis=0)  # [n_test, block]
        accuracy[block] = (predicted == encoded_test[:, None]).mean(axis=0)
    return accuracy


def _sap_result(accuracies: list[np.ndarray], names: tuple[str, ...]) -> SAPResult:
    accuracy = np.stack(accuracies, axis=1)  # [codes, factors]
    top_two = -np.sort(-accuracy, axis=0)[:2]  # [2, factors]
    factor_sap = top_two[0] - top_two[1]
    return SAPResult(
        sap=float(factor_sap.mean()), factor_sap=factor_sap, accuracy=accuracy, factor_names=names
    )


def sap(
    codes_train,
    factors_train,
    codes_test,
    factors_test,
    *,
    factor_names: Sequence[str] | None = None,
    standardize: bool = True,
) -> SAPResult:
    """Separated attribute predictability of codes [N, D] for discrete factors [N, K].

    S_ij = test accuracy of LinearSVC(C=0.01, class_weight="balanced") trained on code i alone
    to predict factor j; SAP_j = top-1 minus top-2 of S_.j; SAP is their mean. The SVMs are
    solved exactly and all codes at once (see `_linear_svm_per_code`), which is what makes
    S-space codes of thousands of dimensions affordable. With `standardize` (the default) each
    code is first scaled to zero mean and unit variance on the training samples: C=0.01 and
    the regularised intercept make LinearSVC depend on a code's scale and offset, which differ
    by orders of magnitude between StyleGAN spaces. `standardize=False` is LinearSVC on the raw codes.
    """
    codes_train, factors_train, codes_test, factors_test = _as_train_test(
        codes_train, factors_train, codes_test, factors_test
    )
    _check_at_least_two_codes(codes_train, "SAP")
    names = _as_names(factor_names, factors_train.shape[1], "factor")
    accuracies = []
    for j, name in enumerate(names):
        _check_classes(factors_train[:, j], name, "training")
        accuracies.append(
            _sap_accuracy_of_factor(
                codes_train, factors_train[:, j], codes_test, factors_test[:, j], standardize
            )
        )
    return _sap_result(accuracies, names)


# ----------------------------------------------------------------------------- StyleSpace protocol


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
    Options as in `dci`.
    """
    codes, attribute_splits = _codes_of_subsets(codes, subsets)
    codes = codes.astype(np.float32, copy=False)
    splits = [
        _FactorSplit(codes[split.train_rows], split.train_labels, codes[split.test_rows], split.test_labels)
        for split in attribute_splits
    ]
    return _dci_from_splits(
        splits, subsets.names, n_jobs=n_jobs, random_state=random_state,
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
