"""InterFaceGAN boundaries (Shen et al.): a linear SVM between the extremes of one attribute.

Pure numpy / scikit-learn; see shared/specs/analyses.md section 1 for the recipe. A boundary is
saved as a direction file (`name.npy` + `name.json`, see `sg3probe.editing`), so that
`sg3probe edit` applies it directly. The `interfacegan` analyzer is built on it, and the
`stylespace` analyzer uses it for its W-versus-S comparison; outside analyzers can too.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from sklearn.svm import SVC

BOUNDARY_FORMAT = 1


@dataclass
class Boundary:
    """A unit normal n (the edit direction) and the hyperplane's offset, with how it was found.

    The signed distance of a code x to the hyperplane is ``x . normal + intercept``
    (intercept = b / ||a|| of the SVM's a . x + b).
    """

    normal: np.ndarray  # [dims] unit vector, float64
    intercept: float = 0.0
    space: str = "w"  # "w", "wplus" or "s"
    attribute: str = ""
    layers: list[int] = field(default_factory=list)  # ws rows (W+ boundaries); [] = every row
    model_sha256: str = ""
    validation_accuracy: float = float("nan")
    middle_accuracy: float = float("nan")  # on the samples between the extremes; NaN if none
    projection_std: float = float("nan")  # std of (codes . normal) over the valid samples
    train_count: int = 0  # samples per class used for training
    validation_count: int = 0  # validation samples, both classes together
    conditions: list[str] = field(default_factory=list)  # attributes projected out (conditional)

    def __post_init__(self) -> None:
        self.normal = np.asarray(self.normal, dtype=np.float64).reshape(-1)

    def distance(self, codes: np.ndarray) -> np.ndarray:
        """Signed distances [N] of codes [N, dims] to the hyperplane (positive: attribute side)."""
        return np.asarray(codes, dtype=np.float64) @ self.normal + self.intercept

    def save(self, path: str | Path) -> Path:
        """Write `path`.npy (normal, shape [1, dims]) and `path`.json (everything else)."""
        path = Path(path).with_suffix(".npy")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, self.normal.reshape(1, -1).astype(np.float32), allow_pickle=False)
        meta = {"format": BOUNDARY_FORMAT, "kind": "interfacegan-boundary"}
        for item in dataclasses.fields(self):
            if item.name != "normal":
                meta[item.name] = _json_number(getattr(self, item.name))
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Boundary":
        """Read a boundary written by `save` (the normal from .npy, the rest from .json)."""
        path = Path(path).with_suffix(".npy")
        normal = np.load(path, allow_pickle=False).astype(np.float64)
        meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        known = {f.name for f in dataclasses.fields(cls)} - {"normal"}
        values = {k: (float("nan") if v is None and k.endswith(("accuracy", "std")) else v)
                  for k, v in meta.items() if k in known}
        return cls(normal=normal, **values)


def _json_number(value: Any) -> Any:
    """NaN has no JSON form: written as null."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def class_sizes(n: int, ratio: float, split: float) -> tuple[int, int]:
    """(samples per class, of which training) for `n` valid samples; a ValueError if either part is empty."""
    if ratio <= 0:
        raise ValueError(f"ratio must be > 0 (a fraction of the samples, or a count if > 1), got {ratio}")
    if not 0 < split < 1:
        raise ValueError(f"split must be in (0, 1), the training share of each class; got {split}")
    chosen = min(int(n * ratio) if ratio <= 1 else int(ratio), n // 2)
    train_count = int(chosen * split)
    if train_count < 1 or chosen - train_count < 1:
        raise ValueError(f"{n} valid samples with ratio {ratio} give {chosen} per class, too few to both "
                         "train and validate; give more samples or a larger ratio")
    return chosen, train_count


def train_boundary(codes: np.ndarray, scores: np.ndarray, ratio: float = 0.02, split: float = 0.7,
                   random_state: int = 0) -> Boundary:
    """Fit the InterFaceGAN boundary of `scores` [N] in `codes` [N, dims] (spec steps 1 to 6).

    The top `ratio` of samples by score are positives, the bottom `ratio` negatives (a count
    if ratio > 1, at most N // 2 each); `split` of each class trains a linear SVC (C=1), the rest
    validates. Returns the unit normal with its intercept, the validation accuracy, the accuracy
    on the middle samples (labelled by score > (max + min) / 2) and the std of the projection.
    """
    codes = np.asarray(codes, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if codes.ndim != 2 or codes.shape[0] != scores.shape[0]:
        raise ValueError(f"codes must be [N, dims] and scores [N]; got {codes.shape} and {scores.shape}")
    valid = np.isfinite(scores) & np.all(np.isfinite(codes), axis=1)
    codes, scores = codes[valid], scores[valid]
    order = np.argsort(-scores, kind="stable")  # descending
    codes, scores = codes[order], scores[order]
    n = len(scores)
    chosen, train_count = class_sizes(n, ratio, split)
    rng = np.random.RandomState(random_state)
    positive = codes[:chosen][rng.permutation(chosen)]
    negative = codes[n - chosen:][rng.permutation(chosen)]
    train_x = np.concatenate([positive[:train_count], negative[:train_count]])
    train_y = np.concatenate([np.ones(train_count), np.zeros(train_count)])
    val_x = np.concatenate([positive[train_count:], negative[train_count:]])
    val_y = np.concatenate([np.ones(chosen - train_count), np.zeros(chosen - train_count)])
    svm = SVC(kernel="linear", C=1.0).fit(train_x, train_y)
    validation_accuracy = float((svm.predict(val_x) == val_y).mean())
    middle = codes[chosen:n - chosen]
    if len(middle):
        decision = (scores[0] + scores[-1]) / 2  # (max + min) / 2, as the original
        middle_y = (scores[chosen:n - chosen] > decision).astype(float)
        middle_accuracy = float((svm.predict(middle) == middle_y).mean())
    else:
        middle_accuracy = float("nan")
    coef = svm.coef_.reshape(-1)
    norm = float(np.linalg.norm(coef))
    if norm == 0:
        raise ValueError("the SVM found no direction (all coefficients zero): the two classes cannot be told apart")
    normal = coef / norm
    return Boundary(normal=normal, intercept=float(svm.intercept_[0]) / norm,
                    validation_accuracy=validation_accuracy, middle_accuracy=middle_accuracy,
                    projection_std=float(np.std(codes @ normal)), train_count=train_count,
                    validation_count=2 * (chosen - train_count))


def conditional_boundary(normal: np.ndarray, conditions: Sequence[np.ndarray]) -> np.ndarray:
    """The unit direction of `normal` with the condition directions projected out (spec formulas).

    One condition c: normalize(n - (n.c) c); two: the closed form of the spec; more: solve
    (C C^T) x = C n and take normalize(n - x^T C). Every input is normalised first.
    """
    n = _unit(normal)
    conditions = [_unit(c) for c in conditions]
    if not conditions:
        return n
    if any(c.shape != n.shape for c in conditions):
        raise ValueError(f"conditions must have the normal's shape {n.shape}")
    if len(conditions) == 1:
        (c,) = conditions
        result = n - (n @ c) * c
    elif len(conditions) == 2:
        c1, c2 = conditions
        p1, p2, k = n @ c1, n @ c2, c1 @ c2
        a = (p1 - p2 * k) / (1 - k ** 2 + 1e-8)
        b = (p2 - p1 * k) / (1 - k ** 2 + 1e-8)
        result = n - a * c1 - b * c2
    else:
        matrix = np.stack(conditions)  # [k, dims]
        x = np.linalg.solve(matrix @ matrix.T, matrix @ n)
        result = n - x @ matrix
    norm = np.linalg.norm(result)
    if norm < 1e-8:
        raise ValueError("the normal lies in the span of its conditions: nothing is left after projecting them out")
    return result / norm


def _unit(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float64).reshape(-1)
    norm = np.linalg.norm(vector)
    if norm == 0:
        raise ValueError("a zero vector has no direction")
    return vector / norm
