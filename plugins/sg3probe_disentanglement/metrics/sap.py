"""SAP: the gap between the two codes that best predict each factor with a linear SVM."""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from sg3probe_disentanglement.metrics.inputs import (SAPResult, _as_names, _as_train_test,
                                                     _check_at_least_two_codes, _check_classes, _column_blocks)

SAP_SVM_C = 0.01  # LinearSVC(C=0.01, class_weight="balanced") of the SAP score


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
