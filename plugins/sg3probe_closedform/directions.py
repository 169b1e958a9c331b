"""Closed-form directions in W (pure numpy / scikit-learn): SeFa and GANSpace.

Both return `Components`: unit directions, best first, with the share of the total each explains.
An eigenvector's sign is arbitrary; each is turned so that its largest-magnitude coordinate is
positive, so the same weights always give the same directions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from sklearn.decomposition import IncrementalPCA


@dataclass
class Components:
    """Directions [K, w_dim] (unit rows, best first) and their eigenvalues or variances [K]."""

    vectors: np.ndarray
    values: np.ndarray
    share: np.ndarray  # [K] each value's share of the sum over every component (not only the K kept)
    stds: np.ndarray | None = None  # [K] GANSpace: the std of W along each component (sqrt of the variance)


def _oriented(vectors: np.ndarray) -> np.ndarray:
    """Rows turned so that each one's largest-magnitude coordinate is positive."""
    signs = np.sign(vectors[np.arange(len(vectors)), np.abs(vectors).argmax(axis=1)])
    return vectors * np.where(signs == 0, 1.0, signs)[:, None]


def sefa(weights: Sequence[np.ndarray], count: int) -> Components:
    """SeFa on the affine weights [C_l, w_dim] of some layers (each layer's style s_l = W_l w + b_l).

    A = [W_1^T ... W_k^T] [w_dim, sum C_l], each column (one style channel's weights) scaled to unit
    length; the directions are the eigenvectors of A A^T by descending eigenvalue: the unit n that
    most change the normalised styles, max |A^T n|^2.
    """
    if not weights:
        raise ValueError("sefa needs the weights of at least one layer")
    a = np.concatenate([np.asarray(w, dtype=np.float64).T for w in weights], axis=1)  # [w_dim, sum C]
    norms = np.linalg.norm(a, axis=0, keepdims=True)
    a = a / np.where(norms == 0, 1.0, norms)
    values, vectors = np.linalg.eigh(a @ a.T)  # ascending
    order = np.argsort(values)[::-1]
    values, vectors = np.clip(values[order], 0, None), vectors[:, order].T
    count = min(count, int(np.linalg.matrix_rank(a)))
    total = values.sum()
    return Components(_oriented(vectors[:count]), values[:count], values[:count] / total if total else values[:count])


def ganspace(chunks: Iterable[np.ndarray], count: int) -> Components:
    """Principal components of W from chunks [n_i, w_dim] (IncrementalPCA, one partial fit per chunk).

    Every chunk must hold at least `count` samples (IncrementalPCA's rule); GANSpace uses chunks of
    2000 or more.
    """
    pca = IncrementalPCA(n_components=count)
    seen = 0
    for chunk in chunks:
        chunk = np.asarray(chunk, dtype=np.float64)
        if len(chunk) < count:
            raise ValueError(f"a chunk of {len(chunk)} samples is smaller than the {count} components")
        pca.partial_fit(chunk)
        seen += len(chunk)
    if not seen:
        raise ValueError("ganspace needs at least one chunk of samples")
    vectors = pca.components_
    oriented = _oriented(vectors)
    variances = pca.explained_variance_
    return Components(oriented, variances, pca.explained_variance_ratio_, np.sqrt(variances))
