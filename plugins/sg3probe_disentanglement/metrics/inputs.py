"""Shared pieces of the metrics: constants, the input error, result types and input checks."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Literal, Union

import numpy as np
import pandas as pd

from sg3probe.errors import Sg3probeError

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
