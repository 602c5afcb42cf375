"""Toy datasets as numpy arrays (never Values), splitting and minibatching. All seeded.

Every loader returns ``(X, y)``: ``X`` a float64 array of shape ``(n_samples, n_features)`` and
``y`` an int64 array of class labels ``0 .. n_classes-1`` (the lecture's four examples are the one
exception: their targets are the floats -1.0 and +1.0, as in the lecture).

``seed`` is an int (the same int gives the same data, always), ``None`` (numpy's global random
state, like scikit-learn's ``random_state=None``) or a ``numpy.random.RandomState``. The random
draws follow scikit-learn's generators call for call, so ``make_moons(100, noise=0.1, seed=1)``
is bit-identical to ``sklearn.datasets.make_moons(100, noise=0.1, random_state=1)`` without
needing scikit-learn (likewise ``make_circles`` and ``make_blobs``, ``train_test_split``).

``DATASETS`` maps a name to its loader. Every loader takes the keywords ``n_samples``, ``noise``
and ``seed`` so a caller can treat them alike; a loader for which one of them means nothing (the
lecture's fixed four examples, the digits' noise) accepts only ``None`` for it and raises a
ValueError saying so otherwise.

>>> X, y = make_moons(6, noise=0.1, seed=0)
>>> X.shape, X.dtype, y.tolist()     # the labels scikit-learn gives for random_state=0
((6, 2), dtype('float64'), [1, 0, 0, 1, 0, 1])
>>> sorted(DATASETS)
['blobs', 'circles', 'digits', 'lecture', 'moons', 'spirals', 'xor']
"""

from __future__ import annotations

import math
import numbers
from typing import Callable, Iterator

import numpy as np

__all__ = ["DATASETS", "lecture_data", "load_digits", "make_blobs", "make_circles", "make_moons",
           "make_spirals", "make_xor", "minibatches", "train_test_split"]


# --- argument checks ------------------------------------------------------------------------------

def _rng(seed) -> np.random.RandomState:
    """scikit-learn's ``check_random_state``: the same seed gives the same stream as sklearn's."""
    if seed is None:
        return np.random.mtrand._rand
    if isinstance(seed, np.random.RandomState):
        return seed
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        if not 0 <= seed < 2 ** 32:
            raise ValueError(f"seed must be between 0 and 2**32 - 1, got {seed}")
        return np.random.RandomState(int(seed))
    raise TypeError(f"seed must be a whole number, None or a numpy RandomState, got {type(seed).__name__} {seed!r}")


def _count(name: str, n, minimum: int = 1) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {n!r}")
    return int(n)


def _noise(noise) -> float | None:
    if noise is None:
        return None
    if isinstance(noise, bool) or not isinstance(noise, numbers.Real) or not math.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite number >= 0 (a standard deviation) or None, got {noise!r}")
    return float(noise)


def _shuffle(rng: np.random.RandomState, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # sklearn.utils.shuffle, call for call: shuffle an index array in place, then index.
    indices = np.arange(X.shape[0])
    rng.shuffle(indices)
    return X[indices], y[indices]


def _split(n: int, k: int) -> list[int]:
    """n examples over k classes as evenly as possible, the first classes taking the remainder (as sklearn)."""
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def _two_classes(rng, outer, inner, noise):
    """Points of two curves ``(xs, ys)`` as classes 0 and 1, shuffled, then noised: sklearn's order of draws."""
    X = np.vstack([np.append(outer[0], inner[0]), np.append(outer[1], inner[1])]).T
    y = np.hstack([np.zeros(len(outer[0]), dtype=np.int64), np.ones(len(inner[0]), dtype=np.int64)])
    X, y = _shuffle(rng, X, y)
    if noise is not None:
        X += rng.normal(scale=noise, size=X.shape)
    return X, y


# --- datasets -------------------------------------------------------------------------------------

def lecture_data(n_samples=None, noise=None, seed=None) -> tuple[np.ndarray, np.ndarray]:
    """The lecture's four examples: 3 inputs each, targets +1.0 / -1.0 (floats, for a tanh output and MSE/SSE).

    The data is fixed: ``seed`` is accepted and ignored, ``n_samples`` may only be None or 4, ``noise`` only None.

    >>> X, y = lecture_data()
    >>> X.tolist()[1], y.tolist()
    ([3.0, -1.0, 0.5], [1.0, -1.0, -1.0, 1.0])
    """
    if n_samples not in (None, 4) or isinstance(n_samples, bool):
        raise ValueError(f"the lecture data has exactly 4 examples; n_samples must be None or 4, got {n_samples!r}")
    if noise is not None:
        raise ValueError("the lecture data is fixed: it takes no noise (pass noise=None)")
    _rng(seed)          # still reject a malformed seed
    X = np.array([[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0], [1.0, 1.0, -1.0]])
    y = np.array([1.0, -1.0, -1.0, 1.0])
    return X, y


def make_moons(n_samples=100, noise=None, seed=None) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles, bit-identical to ``sklearn.datasets.make_moons(n_samples, noise=noise, random_state=seed)``.

    The upper moon (label 0) is ``(cos t, sin t)``, the lower one (label 1) ``(1 - cos t, 0.5 - sin t)``
    for ``t`` evenly spaced in ``[0, pi]``; the samples are shuffled, then Gaussian noise of standard
    deviation ``noise`` is added. micrograd's demo uses ``make_moons(100, noise=0.1)``.

    >>> X, y = make_moons(4, seed=0)       # no noise: t = 0 and t = pi on each moon
    >>> sorted(zip(X.round(3).tolist(), y.tolist()))
    [([-1.0, 0.0], 0), ([0.0, 0.5], 1), ([1.0, 0.0], 0), ([2.0, 0.5], 1)]
    """
    n_samples = _count("n_samples", n_samples)
    noise = _noise(noise)
    rng = _rng(seed)
    n_out = n_samples // 2
    n_in = n_samples - n_out
    outer_x = np.cos(np.linspace(0, np.pi, n_out))
    outer_y = np.sin(np.linspace(0, np.pi, n_out))
    inner_x = 1 - np.cos(np.linspace(0, np.pi, n_in))
    inner_y = 1 - np.sin(np.linspace(0, np.pi, n_in)) - 0.5
    return _two_classes(rng, (outer_x, outer_y), (inner_x, inner_y), noise)


def make_circles(n_samples=100, noise=None, seed=None, factor=0.8) -> tuple[np.ndarray, np.ndarray]:
    """A circle (label 0) around a smaller one (label 1, radius ``factor``), bit-identical to
    ``sklearn.datasets.make_circles(n_samples, noise=noise, random_state=seed, factor=factor)``.

    >>> X, y = make_circles(6, seed=0, factor=0.5)
    >>> radius = np.hypot(X[:, 0], X[:, 1])
    >>> bool(np.allclose(radius, np.where(y == 0, 1.0, 0.5))), sorted(y.tolist())
    (True, [0, 0, 0, 1, 1, 1])
    """
    n_samples = _count("n_samples", n_samples)
    noise = _noise(noise)
    if isinstance(factor, bool) or not isinstance(factor, numbers.Real) or not 0 <= factor < 1:
        raise ValueError(f"factor (inner radius / outer radius) must be in [0, 1), got {factor!r}")
    rng = _rng(seed)
    n_out = n_samples // 2
    n_in = n_samples - n_out
    # endpoint=False, so that the first point of a circle is not also its last.
    angles_out = np.linspace(0, 2 * np.pi, n_out, endpoint=False)
    angles_in = np.linspace(0, 2 * np.pi, n_in, endpoint=False)
    return _two_classes(rng, (np.cos(angles_out), np.sin(angles_out)),
                        (np.cos(angles_in) * factor, np.sin(angles_in) * factor), noise)


def make_blobs(n_samples=100, noise=None, seed=None, centers=3, n_features=2,
               center_box=(-10.0, 10.0)) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs, one class per blob: centres drawn uniformly in ``center_box``, points around them
    with standard deviation ``noise`` (default 1.0). Bit-identical to ``sklearn.datasets.make_blobs(
    n_samples, n_features, centers=centers, cluster_std=noise, center_box=center_box, random_state=seed)``.

    >>> X, y = make_blobs(9, noise=0.5, seed=0, centers=3)
    >>> X.shape, sorted(y.tolist())
    ((9, 2), [0, 0, 0, 1, 1, 1, 2, 2, 2])
    """
    n_samples = _count("n_samples", n_samples)
    noise = _noise(noise)
    std = 1.0 if noise is None else noise
    n_centers = _count("centers", centers)
    n_features = _count("n_features", n_features)
    try:
        low, high = (float(b) for b in center_box)
    except (TypeError, ValueError):
        raise ValueError(f"center_box must be a pair (low, high) of numbers, got {center_box!r}") from None
    if not low <= high:
        raise ValueError(f"center_box must have low <= high, got {center_box!r}")
    rng = _rng(seed)
    center_points = rng.uniform(low, high, size=(n_centers, n_features))
    per_center = _split(n_samples, n_centers)
    X = np.empty((n_samples, n_features), dtype=np.float64)
    y = np.empty(n_samples, dtype=np.int64)
    start = 0
    for i, n in enumerate(per_center):
        X[start:start + n] = rng.normal(loc=center_points[i], scale=std, size=(n, n_features))
        y[start:start + n] = i
        start += n
    return _shuffle(rng, X, y)


def make_spirals(n_samples=100, noise=0.2, seed=None, n_classes=2) -> tuple[np.ndarray, np.ndarray]:
    """Interleaved spiral arms, one per class (CS231n's spiral data).

    Class ``j``'s points have radius ``r`` evenly spaced in ``[0, 1]`` and angle ``4 j + 4 r`` (in
    radians) plus Gaussian noise of standard deviation ``noise`` on the angle; the point is
    ``(r sin(angle), r cos(angle))``. The samples are shuffled.

    >>> X, y = make_spirals(90, seed=0, n_classes=3)
    >>> X.shape, np.bincount(y).tolist(), bool(np.abs(X).max() <= 1)
    ((90, 2), [30, 30, 30], True)
    """
    n_samples = _count("n_samples", n_samples)
    noise = _noise(noise)
    n_classes = _count("n_classes", n_classes, minimum=2)
    rng = _rng(seed)
    per_class = _split(n_samples, n_classes)
    parts_X, parts_y = [], []
    for j, n in enumerate(per_class):
        r = np.linspace(0.0, 1.0, n)
        angle = np.linspace(4.0 * j, 4.0 * (j + 1), n)
        if noise is not None:
            angle = angle + rng.normal(scale=noise, size=n)
        parts_X.append(np.column_stack([r * np.sin(angle), r * np.cos(angle)]))
        parts_y.append(np.full(n, j, dtype=np.int64))
    return _shuffle(rng, np.concatenate(parts_X), np.concatenate(parts_y))


def make_xor(n_samples=100, noise=None, seed=None) -> tuple[np.ndarray, np.ndarray]:
    """XOR: points uniform in the square ``[-1, 1]^2``, label 1 where exactly one coordinate is positive.

    The label is taken from the clean point; Gaussian noise of standard deviation ``noise`` is then
    added to the coordinates, so a nonzero noise blurs the quadrant borders. No single line separates
    the classes: the smallest problem that needs a hidden layer.

    >>> X, y = make_xor(200, seed=0)
    >>> bool(np.all(y == ((X[:, 0] > 0) != (X[:, 1] > 0))))
    True
    """
    n_samples = _count("n_samples", n_samples)
    noise = _noise(noise)
    rng = _rng(seed)
    X = rng.uniform(-1.0, 1.0, size=(n_samples, 2))
    y = ((X[:, 0] > 0) != (X[:, 1] > 0)).astype(np.int64)
    if noise is not None:
        X += rng.normal(scale=noise, size=X.shape)
    return X, y


def load_digits(n_samples=None, noise=None, seed=None) -> tuple[np.ndarray, np.ndarray]:
    """Handwritten digits, 8x8 pixels: 1,797 images as rows of 64 values in ``[0, 1]``, labels 0..9.

    Read from scikit-learn's bundled copy (``pip install "chainrule[sklearn]"``). With ``n_samples``,
    a random subset of that many images (drawn with ``seed``), since a scalar engine trains slowly on
    all of them. ``noise`` must be None.

    >>> X, y = load_digits()
    >>> X.shape, float(X.min()), float(X.max()), sorted(set(y.tolist()))
    ((1797, 64), 0.0, 1.0, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    """
    if noise is not None:
        raise ValueError("the digits dataset takes no noise (pass noise=None)")
    if n_samples is not None:
        n_samples = _count("n_samples", n_samples)
    rng = _rng(seed) if n_samples is not None else None
    try:
        from sklearn import datasets as sk_datasets
    except ImportError:
        raise ImportError('load_digits reads scikit-learn\'s bundled copy of the digits; install it with: '
                          'pip install "chainrule[sklearn]"') from None
    bunch = sk_datasets.load_digits()
    X = np.asarray(bunch.data, dtype=np.float64) / 16.0      # pixel intensities are 0..16
    y = np.asarray(bunch.target, dtype=np.int64)
    if n_samples is not None:
        if n_samples > len(X):
            raise ValueError(f"the digits dataset has {len(X)} images; n_samples={n_samples} is too many")
        keep = rng.permutation(len(X))[:n_samples]
        X, y = X[keep], y[keep]
    return X, y


# --- splitting and batching -----------------------------------------------------------------------

def _check_xy(X, y) -> tuple[np.ndarray, np.ndarray]:
    X, y = np.asarray(X), np.asarray(y)
    if X.ndim == 0 or y.ndim == 0:
        raise ValueError("X and y must be arrays with one row/entry per example")
    if len(X) != len(y):
        raise ValueError(f"X has {len(X)} examples but y has {len(y)}; they must match one to one")
    return X, y


def train_test_split(X, y, test_size=0.25, seed=0):
    """Split into ``X_train, X_test, y_train, y_test`` after a seeded shuffle.

    ``test_size`` is a fraction in (0, 1) (the test set gets ``ceil(test_size * n)`` examples) or a
    whole number of test examples. Same split as ``sklearn.model_selection.train_test_split(X, y,
    test_size=test_size, random_state=seed)``.

    >>> X, y = make_moons(8, seed=0)
    >>> X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, seed=0)
    >>> X_train.shape, X_test.shape, y_test.shape
    ((6, 2), (2, 2), (2,))
    """
    X, y = _check_xy(X, y)
    n = len(X)
    if isinstance(test_size, bool) or not isinstance(test_size, numbers.Real):
        raise ValueError(f"test_size must be a fraction in (0, 1) or a whole number of examples, got {test_size!r}")
    if isinstance(test_size, numbers.Integral):
        n_test = int(test_size)
    elif 0 < test_size < 1:
        n_test = math.ceil(test_size * n)
    else:
        raise ValueError(f"test_size as a fraction must be strictly between 0 and 1, got {test_size!r}")
    if not 1 <= n_test <= n - 1:
        raise ValueError(f"test_size={test_size!r} leaves {n_test} of {n} examples for testing; "
                         f"both the training and the test set need at least one")
    order = _rng(seed).permutation(n)
    test, train = order[:n_test], order[n_test:]
    return X[train], X[test], y[train], y[test]


def minibatches(X, y, batch_size, seed=0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One pass over the data in shuffled batches of ``batch_size`` (the last one may be smaller).

    ``batch_size`` None or 0 means one full batch, in the original order. The same ``seed`` gives the
    same batches; for a new order every epoch pass a different seed (``seed + epoch``) or one
    ``numpy.random.RandomState`` that carries on.

    >>> X, y = make_moons(10, seed=0)
    >>> [len(yb) for Xb, yb in minibatches(X, y, 4, seed=0)]
    [4, 4, 2]
    >>> sorted(np.concatenate([yb for _, yb in minibatches(X, y, 4)]).tolist()) == sorted(y.tolist())
    True
    """
    X, y = _check_xy(X, y)
    if batch_size is None or (batch_size == 0 and not isinstance(batch_size, bool)):
        yield X, y
        return
    batch_size = _count("batch_size", batch_size)
    order = _rng(seed).permutation(len(X))
    for start in range(0, len(X), batch_size):
        idx = order[start:start + batch_size]
        yield X[idx], y[idx]


# Names the command line accepts (``--dataset moons``). Each loader takes n_samples=, noise=, seed=.
DATASETS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "blobs": make_blobs,
    "circles": make_circles,
    "digits": load_digits,
    "lecture": lecture_data,
    "moons": make_moons,
    "spirals": make_spirals,
    "xor": make_xor,
}
