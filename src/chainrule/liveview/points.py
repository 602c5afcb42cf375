"""The points the live page shows and edits: training and test points, their classes, their targets.

Classes are numbers 0..C-1 here whatever the caller gave (0/1 or -1/+1 for one output); each loss
gets them converted as ``fit`` converts them. Training points come first, test points after, so a
point's number is its place in that list.

>>> points = Points([[0, 0], [1, 1], [2, 0]], [0, 1, -1], n_classes=2, one_output=True)
>>> points.classes.tolist(), points.add(0.5, 0.5, 1), len(points)
([0, 1, 0], 3, 4)
>>> points.add(0.5, float("nan"), 1)
Traceback (most recent call last):
chainrule.liveview.controls.LiveError: y must be a finite number, got nan
"""

from __future__ import annotations

import numpy as np

from ..train import _targets
from .controls import LIMITS, LiveError, real, whole

__all__ = ["Points"]


class Points:
    """``X`` (n x 2), ``classes`` and ``is_test`` side by side; ``extent`` is the plane drawn, fixed."""

    def __init__(self, X, y, X_test=None, y_test=None, *, n_classes: int, one_output: bool):
        self.n_classes, self.one_output = n_classes, one_output
        X = _coordinates(X, "X")
        classes = self._classes(y, len(X), "y")
        if X_test is not None:
            X_test = _coordinates(X_test, "X_test")
            classes = np.concatenate([classes, self._classes(y_test, len(X_test), "y_test")])
        self.X = X if X_test is None else np.concatenate([X, X_test])
        self.classes = classes
        self.is_test = np.r_[np.zeros(len(X), bool), np.ones(len(self.X) - len(X), bool)]
        if len(self.X) > LIMITS["points"]:
            raise ValueError(f"live shows at most {LIMITS['points']} points, got {len(self.X)}")
        (x0, y0), (x1, y1) = self.X.min(axis=0) - 0.5, self.X.max(axis=0) + 0.5
        self.extent = [float(x0), float(x1), float(y0), float(y1)]

    def __len__(self) -> int:
        return len(self.X)

    @property
    def n_train(self) -> int:
        return int((~self.is_test).sum())

    def index(self, value) -> int:
        """A point's number from a command, checked."""
        index = whole("index", value)
        if not 0 <= index < len(self.X):
            raise LiveError(f"index must be a point's number, 0 to {len(self.X) - 1}, got {index}")
        return index

    def add(self, x, y, label) -> int:
        """Add a training point (checked first: nothing changes on a refusal); returns its number."""
        x, y = real("x", x), real("y", y)
        if max(abs(x), abs(y)) > LIMITS["coordinate"]:
            raise LiveError(f"a point's coordinates must be within +-{LIMITS['coordinate']:g}, got ({x:g}, {y:g})")
        label = whole("label", label)
        if not 0 <= label < self.n_classes:
            raise LiveError(f"label must be a class, 0 to {self.n_classes - 1}, got {label}")
        if len(self.X) >= LIMITS["points"]:
            raise LiveError(f"there are already {len(self.X)} points, the most live shows; remove some first")
        at = self.n_train
        self.X = np.insert(self.X, at, [x, y], axis=0)
        self.classes = np.insert(self.classes, at, label)
        self.is_test = np.insert(self.is_test, at, False)
        return at

    def remove(self, index: int) -> None:
        """Remove point ``index`` (as checked by :meth:`index`); training keeps at least 2 points."""
        if self.n_train <= 2 and not self.is_test[index]:
            raise LiveError("training needs at least 2 points: add one before removing this one")
        keep = np.arange(len(self.X)) != index
        self.X, self.classes, self.is_test = self.X[keep], self.classes[keep], self.is_test[keep]

    def targets(self, loss_fn) -> tuple[np.ndarray, np.ndarray | None]:
        """The training and test targets in the form ``loss_fn`` wants (None: no test points)."""
        train = ~self.is_test
        test = _targets(loss_fn, self.classes[~train], int((~train).sum()), "y_test") if (~train).any() else None
        return _targets(loss_fn, self.classes[train], int(train.sum()), "y"), test

    def _classes(self, y, n: int, name: str) -> np.ndarray:
        y = np.asarray(y).reshape(-1)
        if len(y) != n:
            raise ValueError(f"{name} must hold one label per point ({n}), got {len(y)}")
        if self.one_output:
            if not set(np.unique(y).tolist()) <= {0, 1, -1}:
                raise ValueError(f"{name} must hold two classes, 0/1 or -1/+1, for a model with one output")
            return (y > 0).astype(int)
        if not all(float(v).is_integer() and 0 <= v < self.n_classes for v in np.unique(y)):
            raise ValueError(f"{name} must hold class numbers 0 to {self.n_classes - 1}")
        return y.astype(int)


def _coordinates(X, name: str) -> np.ndarray:
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[1] != 2 or len(X) == 0:
        raise ValueError(f"{name} must be n points x 2 coordinates, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError(f"{name} contains nan or inf")
    return X
