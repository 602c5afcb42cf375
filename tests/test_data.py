"""Datasets: bit-identical to scikit-learn where they mirror it, seeded, validated; splitting and batching."""

import sys

import numpy as np
import pytest

from chainrule import data
from chainrule.data import (DATASETS, lecture_data, load_digits, make_blobs, make_circles, make_moons, make_spirals,
                            make_xor, minibatches, train_test_split)

sk_datasets = pytest.importorskip("sklearn.datasets")
sk_model_selection = pytest.importorskip("sklearn.model_selection")

CASES = [(n, noise, seed) for n, noise, seed in [
    (100, 0.1, 0), (100, 0.1, 1337), (101, 0.3, 7), (1, None, 3), (2, 0.05, 42), (57, None, 0), (250, 1.0, 2**32 - 1),
]]


def _identical(ours, theirs):
    (X, y), (Xs, ys) = ours, theirs
    assert X.dtype == np.float64 and y.dtype == np.int64
    assert np.array_equal(X, Xs) and np.array_equal(y, ys)


@pytest.mark.parametrize("n, noise, seed", CASES)
def test_make_moons_is_bit_identical_to_sklearn(n, noise, seed):
    """make_moons gives exactly sklearn's make_moons array, for several sizes (odd ones too), noises and seeds."""
    _identical(make_moons(n, noise=noise, seed=seed), sk_datasets.make_moons(n, noise=noise, random_state=seed))


@pytest.mark.parametrize("n, noise, seed", CASES)
def test_make_circles_is_bit_identical_to_sklearn(n, noise, seed):
    """make_circles gives exactly sklearn's make_circles array, with the default and a custom factor."""
    _identical(make_circles(n, noise=noise, seed=seed), sk_datasets.make_circles(n, noise=noise, random_state=seed))
    _identical(make_circles(n, noise=noise, seed=seed, factor=0.3),
               sk_datasets.make_circles(n, noise=noise, random_state=seed, factor=0.3))


@pytest.mark.parametrize("n, centers, std, seed", [(100, 3, None, 0), (101, 4, 0.5, 9), (7, 2, 2.0, 1)])
def test_make_blobs_is_bit_identical_to_sklearn(n, centers, std, seed):
    """make_blobs (noise = cluster standard deviation, default 1) gives exactly sklearn's make_blobs array."""
    theirs = sk_datasets.make_blobs(n, centers=centers, cluster_std=1.0 if std is None else std, random_state=seed)
    _identical(make_blobs(n, noise=std, seed=seed, centers=centers), theirs)


def test_seed_none_uses_numpys_global_state_like_sklearn():
    """seed=None draws from numpy's global random state, as sklearn's random_state=None does."""
    np.random.seed(5)
    ours = make_moons(30, noise=0.2)
    np.random.seed(5)
    _identical(ours, sk_datasets.make_moons(30, noise=0.2))


def test_a_randomstate_seed_carries_on():
    """A RandomState passed as seed is used and advanced, so two calls give different data."""
    rng = np.random.RandomState(0)
    first, second = make_moons(20, 0.1, rng), make_moons(20, 0.1, rng)
    assert not np.array_equal(first[0], second[0])


@pytest.mark.parametrize("name", sorted(set(DATASETS) - {"digits", "lecture"}))
def test_same_seed_same_data_other_seed_other_data(name):
    """Every random loader repeats exactly for a seed and changes with it."""
    loader = DATASETS[name]
    a, b, c = loader(seed=1), loader(seed=1), loader(seed=2)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("name", sorted(set(DATASETS) - {"digits"}))
def test_loaders_share_the_uniform_signature(name):
    """Every loader takes n_samples=, noise=, seed= keywords and returns float64 X (n, d) and labels y (n,)."""
    loader = DATASETS[name]
    n = 4 if name == "lecture" else 30
    X, y = loader(n_samples=n, noise=None, seed=0)
    assert X.dtype == np.float64 and X.ndim == 2 and X.shape[0] == n and y.shape == (n,)
    if name != "lecture":
        assert y.dtype == np.int64 and y.min() == 0


def test_lecture_data_is_the_lectures_four_examples():
    """The lecture's xs and ys, as floats (ys are +-1 regression targets)."""
    X, y = lecture_data()
    assert X.tolist() == [[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0], [1.0, 1.0, -1.0]]
    assert y.tolist() == [1.0, -1.0, -1.0, 1.0]
    with pytest.raises(ValueError, match="exactly 4"):
        lecture_data(n_samples=10)
    with pytest.raises(ValueError, match="noise"):
        lecture_data(noise=0.1)


@pytest.mark.parametrize("n_classes", [2, 3, 5])
def test_spirals_are_balanced_arms_inside_the_unit_disc(n_classes):
    """make_spirals gives n_classes equally sized arms whose clean points lie at radius <= 1."""
    X, y = make_spirals(101, noise=None, seed=0, n_classes=n_classes)
    counts = np.bincount(y)
    assert len(counts) == n_classes and counts.max() - counts.min() <= 1
    assert np.all(np.hypot(X[:, 0], X[:, 1]) <= 1 + 1e-12)


def test_xor_labels_follow_the_quadrants():
    """Without noise, label 1 exactly where the two coordinates have opposite signs; both classes appear."""
    X, y = make_xor(500, seed=3)
    assert np.array_equal(y, (np.sign(X[:, 0]) != np.sign(X[:, 1])).astype(np.int64))
    assert 0.4 < y.mean() < 0.6


def test_load_digits_scaled_like_sklearn():
    """load_digits returns sklearn's 1,797 8x8 images divided by 16 (so in [0, 1]) and their int labels."""
    X, y = load_digits()
    bunch = sk_datasets.load_digits()
    assert X.shape == (1797, 64) and y.dtype == np.int64
    assert np.array_equal(X, bunch.data / 16.0) and np.array_equal(y, bunch.target)
    assert X.min() == 0.0 and X.max() == 1.0


def test_load_digits_subset_is_seeded():
    """n_samples picks a seeded random subset of whole images."""
    X1, y1 = load_digits(n_samples=50, seed=0)
    X2, y2 = load_digits(n_samples=50, seed=0)
    assert X1.shape == (50, 64) and np.array_equal(X1, X2) and np.array_equal(y1, y2)
    full_X, _ = load_digits()
    assert all(any(np.array_equal(row, full) for full in full_X) for row in X1[:5])
    with pytest.raises(ValueError, match="1797 images"):
        load_digits(n_samples=5000)


def test_load_digits_without_sklearn_says_how_to_install(monkeypatch):
    """Without scikit-learn, load_digits raises ImportError naming the chainrule[sklearn] extra."""
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(ImportError, match=r'pip install "chainrule\[sklearn\]"'):
        load_digits()


def test_moons_work_without_sklearn(monkeypatch):
    """make_moons needs no scikit-learn at all."""
    monkeypatch.setitem(sys.modules, "sklearn", None)
    X, y = make_moons(10, noise=0.1, seed=0)
    assert X.shape == (10, 2)


@pytest.mark.parametrize("test_size, seed", [(0.25, 0), (0.3, 5), (0.5, 1), (10, 2)])
def test_train_test_split_matches_sklearn(test_size, seed):
    """train_test_split gives sklearn's split for the same test_size and seed."""
    X, y = make_moons(41, noise=0.1, seed=0)
    ours = train_test_split(X, y, test_size=test_size, seed=seed)
    theirs = sk_model_selection.train_test_split(X, y, test_size=test_size, random_state=seed)
    assert len(ours) == 4
    for a, b in zip(ours, theirs):
        assert np.array_equal(a, b)


def test_train_test_split_partitions_the_data():
    """Train and test are disjoint and together hold every example once, rows kept with their labels."""
    X = np.arange(20, dtype=float).reshape(10, 2)
    y = np.arange(10)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, seed=4)
    assert len(y_te) == 3 and sorted(np.concatenate([y_tr, y_te]).tolist()) == list(range(10))
    assert np.array_equal(X_te[:, 0], 2 * y_te)


@pytest.mark.parametrize("test_size", [0.0, 1.0, 1.5, -0.1, 0, 10, "a", True])
def test_train_test_split_rejects_bad_sizes(test_size):
    """A test size that leaves either side empty, or is not a number, is a ValueError."""
    X, y = np.zeros((10, 2)), np.zeros(10)
    with pytest.raises(ValueError, match="test_size"):
        train_test_split(X, y, test_size=test_size)


def test_minibatches_cover_each_example_once_and_repeat_for_a_seed():
    """One pass yields every example exactly once in batches of batch_size; the same seed repeats the order."""
    X = np.arange(22, dtype=float).reshape(11, 2)
    y = np.arange(11)
    batches = list(minibatches(X, y, 4, seed=3))
    assert [len(yb) for _, yb in batches] == [4, 4, 3]
    assert sorted(np.concatenate([yb for _, yb in batches]).tolist()) == list(range(11))
    assert all(np.array_equal(Xb[:, 0], 2 * yb) for Xb, yb in batches)
    again = list(minibatches(X, y, 4, seed=3))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(batches, again))
    other = np.concatenate([yb for _, yb in minibatches(X, y, 4, seed=4)])
    assert not np.array_equal(other, np.concatenate([yb for _, yb in batches]))


@pytest.mark.parametrize("batch_size", [None, 0])
def test_minibatches_full_batch(batch_size):
    """batch_size None or 0 yields the whole set once, in order."""
    X, y = make_moons(9, seed=0)
    (Xb, yb), = list(minibatches(X, y, batch_size))
    assert np.array_equal(Xb, X) and np.array_equal(yb, y)


@pytest.mark.parametrize("call, match", [
    (lambda: make_moons(0), "n_samples"),
    (lambda: make_moons(2.5), "n_samples"),
    (lambda: make_moons(10, noise=-0.1), "noise"),
    (lambda: make_moons(10, seed="abc"), "seed"),
    (lambda: make_moons(10, seed=-1), "seed"),
    (lambda: make_circles(10, factor=1.0), "factor"),
    (lambda: make_blobs(10, centers=0), "centers"),
    (lambda: make_spirals(10, n_classes=1), "n_classes"),
    (lambda: load_digits(noise=0.1), "noise"),
    (lambda: list(minibatches(np.zeros((3, 2)), np.zeros(3), -2)), "batch_size"),
    (lambda: list(minibatches(np.zeros((3, 2)), np.zeros(4), 2)), "3 examples but y has 4"),
])
def test_bad_arguments_are_clear_errors(call, match):
    """Malformed sizes, noises, seeds and shapes raise an error naming the argument."""
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_datasets_registry_names():
    """DATASETS lists the loaders the command line offers."""
    assert DATASETS == {"blobs": make_blobs, "circles": make_circles, "digits": load_digits, "lecture": lecture_data,
                        "moons": make_moons, "spirals": make_spirals, "xor": make_xor}
    assert data.__all__
