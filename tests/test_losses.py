"""Losses: values and gradients against PyTorch float64, stability at extreme logits, clear errors."""

import math
import random

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from chainrule import Value  # noqa: E402
from chainrule.numerical import gradcheck  # noqa: E402
from chainrule.losses import (LOSSES, bce_with_logits, hinge_loss, l2_penalty, mse_loss,  # noqa: E402
                              softmax_cross_entropy, sse_loss)

TOL = dict(rel=1e-12, abs=1e-14)


def _ours(loss_fn, xs, targets):
    """Our loss value and the gradient of every input, from plain floats."""
    vs = [Value(x) for x in xs]
    loss = loss_fn(vs, targets)
    loss.backward()
    return loss.data, [v.grad for v in vs]


def _theirs(torch_fn, xs, targets):
    t = torch.tensor(xs, dtype=torch.float64, requires_grad=True)
    loss = torch_fn(t, torch.tensor(targets, dtype=torch.float64))
    loss.backward()
    return loss.item(), t.grad.tolist()


def _close(ours, theirs):
    (lo, go), (lt, gt) = ours, theirs
    assert lo == pytest.approx(lt, **TOL)
    assert go == pytest.approx(gt, **TOL)
    return max([abs(lo - lt)] + [abs(a - b) for a, b in zip(go, gt)])


def _random_case(n, seed, scale=2.0):
    rng = random.Random(seed)
    return [rng.uniform(-scale, scale) for _ in range(n)], rng


@pytest.mark.parametrize("seed", range(5))
def test_mse_matches_torch(seed):
    """mse_loss equals torch's mean-reduced mse_loss in value and gradient."""
    xs, rng = _random_case(7, seed)
    ts = [rng.uniform(-2, 2) for _ in xs]
    _close(_ours(mse_loss, xs, ts), _theirs(F.mse_loss, xs, ts))


@pytest.mark.parametrize("seed", range(5))
def test_sse_matches_torch(seed):
    """sse_loss equals torch's sum-reduced mse_loss (the lecture's sum of squared errors)."""
    xs, rng = _random_case(4, seed)
    ts = [rng.choice([-1.0, 1.0]) for _ in xs]
    _close(_ours(sse_loss, xs, ts), _theirs(lambda a, b: F.mse_loss(a, b, reduction="sum"), xs, ts))


@pytest.mark.parametrize("seed", range(5))
def test_hinge_matches_torch(seed):
    """hinge_loss equals mean(relu(1 - y*s)) computed in torch, including the zero-gradient side of the margin."""
    xs, rng = _random_case(9, seed)
    ys = [rng.choice([-1, 1]) for _ in xs]
    _close(_ours(hinge_loss, xs, ys), _theirs(lambda s, y: torch.relu(1 - y * s).mean(), xs, ys))


@pytest.mark.parametrize("seed", range(5))
def test_bce_matches_torch(seed):
    """bce_with_logits equals torch's binary_cross_entropy_with_logits in value and gradient."""
    xs, rng = _random_case(8, seed, scale=6.0)
    ys = [rng.choice([0, 1]) for _ in xs]
    _close(_ours(bce_with_logits, xs, ys), _theirs(F.binary_cross_entropy_with_logits, xs, ys))


def test_bce_at_zero_logit_has_the_true_gradient():
    """At logit exactly 0 the gradient is sigmoid(0) - y = +-0.5, even though relu's gradient is 0 there."""
    _close(_ours(bce_with_logits, [0.0, 0.0], [0, 1]),
           _theirs(F.binary_cross_entropy_with_logits, [0.0, 0.0], [0.0, 1.0]))


@pytest.mark.parametrize("z", [1000.0, -1000.0, 700.0, -745.0, 1e300, -1e300])
@pytest.mark.parametrize("y", [0, 1])
def test_bce_is_finite_and_correct_at_extreme_logits(z, y):
    """Huge logits give torch's finite loss and exact gradient instead of an overflow or a log(0) error."""
    loss, grads = _ours(bce_with_logits, [z], [y])
    assert math.isfinite(loss) and math.isfinite(grads[0])
    _close((loss, grads), _theirs(F.binary_cross_entropy_with_logits, [z], [float(y)]))


def _check_cross_entropy(rows, targets):
    """Assert our softmax cross-entropy and its gradients equal torch's cross_entropy, for targets given
    as class numbers or as rows of class probabilities; return our loss."""
    vs = [[Value(x) for x in row] for row in rows]
    loss = softmax_cross_entropy(vs, targets)
    loss.backward()
    t = torch.tensor(rows, dtype=torch.float64, requires_grad=True)
    as_rows = isinstance(targets[0], (list, tuple))
    expected = F.cross_entropy(t, torch.tensor(targets, dtype=torch.float64 if as_rows else torch.int64))
    expected.backward()
    assert loss.data == pytest.approx(expected.item(), **TOL)
    assert [v.grad for row in vs for v in row] == pytest.approx(t.grad.flatten().tolist(), **TOL)
    return loss.data


@pytest.mark.parametrize("seed", range(5))
def test_softmax_cross_entropy_matches_torch(seed):
    """softmax_cross_entropy equals torch's cross_entropy (mean) in value and gradient of every logit."""
    rng = random.Random(seed)
    n, c = 5, 4
    rows = [[rng.uniform(-3, 3) for _ in range(c)] for _ in range(n)]
    labels = [rng.randrange(c) for _ in range(n)]
    _check_cross_entropy(rows, labels)


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    """Logits of +-1000 (where exp overflows) give torch's finite loss and gradient, thanks to the max shift."""
    rows = [[1000.0, -1000.0, 999.0], [-1000.0, -1000.0, -998.0]]
    loss = _check_cross_entropy(rows, [2, 0])
    assert math.isfinite(loss)


def test_softmax_cross_entropy_accepts_one_row_and_one_label():
    """A single row with a single int label is the same as a batch of one."""
    row = [Value(0.3), Value(-1.2), Value(2.0)]
    assert softmax_cross_entropy(row, 1).data == softmax_cross_entropy([row], [1]).data


@pytest.mark.parametrize("seed", range(5))
def test_softmax_cross_entropy_with_probability_targets_matches_torch(seed):
    """Rows of class probabilities as targets give torch's cross_entropy with probability targets
    (float64), value and gradient, including rows with zeros and logits of +-1000."""
    rng = random.Random(seed)
    n, c = 5, 4
    rows = [[rng.uniform(-3, 3) for _ in range(c)] for _ in range(n)]
    rows[0] = [1000.0, -1000.0, 999.0, 0.0]
    targets = []
    for i in range(n):
        w = [rng.random() if j != i % c else 0.0 for j in range(c)]
        targets.append([x / sum(w) for x in w])
    assert math.isfinite(_check_cross_entropy(rows, targets))


def test_one_hot_targets_equal_class_labels_exactly():
    """One-hot float rows give the same loss and gradients as the class numbers they encode."""
    rng = random.Random(0)
    rows = [[rng.uniform(-3, 3) for _ in range(3)] for _ in range(4)]
    labels = [2, 0, 1, 2]
    results = []
    for targets in (labels, [[float(j == k) for j in range(3)] for k in labels]):
        vs = [[Value(x) for x in row] for row in rows]
        loss = softmax_cross_entropy(vs, targets)
        loss.backward()
        results.append((loss.data, [v.grad for row in vs for v in row]))
    assert results[0][0] == results[1][0]
    assert results[0][1] == pytest.approx(results[1][1], rel=1e-15, abs=1e-16)


def test_probability_targets_pass_gradcheck():
    """With a soft target row, every logit's gradient agrees with central finite differences."""
    report = gradcheck(lambda a, b, c: softmax_cross_entropy([[a, b, c]], [[0.2, 0.5, 0.3]]), [0.4, 0.2, -1.3])
    assert report, str(report)


@pytest.mark.parametrize("targets, error, message", [
    ([[0.5, 0.5, 0.0]], ValueError, "has 3 probabilities but there are 2 classes"),
    ([[1.5, -0.5]], ValueError, r"labels\[0\]\[1\] is -0.5, but a class probability must be a finite number >= 0"),
    ([[0.5, 0.4]], ValueError, r"labels\[0\] sums to 0.9, but class probabilities must sum to 1"),
    ([[float("nan"), 1.0]], ValueError, "finite number >= 0"),
    ([["a", "b"]], TypeError, r"labels\[0\]\[0\] must be a number"),
    ([[0.0, 1.0], 1], TypeError, r"labels\[1\] is a class number but other labels are rows"),
])
def test_probability_targets_are_validated(targets, error, message):
    """A target row of the wrong width, with a negative or nan entry, not summing to 1, not made of
    numbers, or mixed with class numbers is a clear error naming the row."""
    with pytest.raises(error, match=message):
        softmax_cross_entropy([[Value(0.0), Value(1.0)]] * len(targets), targets)


def test_probability_rows_may_sum_to_one_within_1e_9():
    """Rounding in a normalised row (sum 1 +- 1e-10) is accepted; 1 + 1e-8 is not."""
    row = [Value(0.0), Value(1.0)]
    softmax_cross_entropy([row], [[0.5, 0.5 + 1e-10]])
    with pytest.raises(ValueError, match="sum to 1"):
        softmax_cross_entropy([row], [[0.5, 0.5 + 1e-8]])


def test_compiled_replay_recomputes_the_max_shift():
    """Recorded on logits near 0 with one-hot targets, a compiled loss replays on logits near +1000
    and near -1000 (where exp of an unshifted or stale-shifted logit overflows or underflows to 0)
    and on new targets, and still gives torch's value and gradients: the shift is recomputed."""
    from chainrule import compile
    bias = [[Value(0.0) for _ in range(3)] for _ in range(2)]     # parameters: the logits are bias + x
    step = compile(lambda x, t: softmax_cross_entropy(
        [[b + xi for b, xi in zip(brow, xrow)] for brow, xrow in zip(bias, x)], t))
    step([[0.1, -0.2, 0.3], [0.0, 0.5, -0.5]], [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    for x, t in [([[1000.0, 999.0, -3.0], [1001.0, 1000.5, 1000.0]], [[0.0, 1.0, 0.0], [0.25, 0.25, 0.5]]),
                 ([[-1000.0, -999.0, -3.0], [-1001.0, -1000.5, -1000.0]], [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])]:
        for row in bias:
            for b in row:
                b.grad = 0.0
        loss = step(x, t)
        loss.backward()
        xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        expected = F.cross_entropy(xt, torch.tensor(t, dtype=torch.float64))
        expected.backward()
        assert loss.data == pytest.approx(expected.item(), **TOL)
        assert [b.grad for row in bias for b in row] == pytest.approx(xt.grad.flatten().tolist(), **TOL)


def test_l2_penalty_matches_torch():
    """l2_penalty is alpha * sum p^2, with gradient 2 * alpha * p, as computed in torch."""
    xs, _ = _random_case(6, 0)
    alpha = 1e-4
    ours = _ours(lambda ps, _: l2_penalty(ps, alpha), xs, None)
    theirs = _theirs(lambda p, _: alpha * (p * p).sum(), xs, [0.0])
    _close(ours, theirs)


def test_l2_penalty_with_zero_alpha_is_zero():
    """alpha = 0 (no regularisation) gives a loss of 0 and leaves gradients alone."""
    w = Value(3.0)
    assert l2_penalty([w], 0.0).data == 0.0


@pytest.mark.parametrize("name", sorted(set(LOSSES) - {"cross_entropy"}))
def test_losses_pass_gradcheck(name):
    """Each per-example loss agrees with central finite differences, through chainrule's own gradcheck."""
    fn = LOSSES[name]
    targets = {"hinge": [1, -1, 1], "bce": [1, 0, 1]}.get(name, [0.3, -0.7, 1.1])
    report = gradcheck(lambda a, b, c: fn([a, b, c], targets), [0.4, 0.2, -1.3])
    assert report, str(report)


def test_softmax_cross_entropy_passes_gradcheck():
    """Softmax cross-entropy agrees with central finite differences for every logit of a row."""
    report = gradcheck(lambda a, b, c: softmax_cross_entropy([[a, b, c]], [1]), [0.4, 0.2, -1.3])
    assert report, str(report)


def test_single_value_prediction_is_one_example():
    """A single Value and a plain-number target count as a batch of one."""
    p = Value(0.5)
    assert mse_loss(p, 1.0).data == 0.25
    assert hinge_loss(p, -1).data == 1.5


def test_numpy_targets_are_accepted():
    """Targets may be a numpy array, as the data loaders return them."""
    np = pytest.importorskip("numpy")
    preds = [Value(0.0), Value(2.0)]
    assert hinge_loss(preds, np.array([1, -1])).data == pytest.approx(2.0)
    assert bce_with_logits(preds, np.array([0, 1], dtype=np.int64)).data == pytest.approx(
        (math.log(2) + math.log1p(math.exp(-2))) / 2)


@pytest.mark.parametrize("fn", [mse_loss, sse_loss, hinge_loss, bce_with_logits])
def test_length_mismatch_is_a_clear_error(fn):
    """Predictions and targets of different lengths raise a ValueError giving both lengths."""
    with pytest.raises(ValueError, match="3 entries but .* has 2"):
        fn([Value(1.0)] * 3, [1, 1])


def test_empty_predictions_are_an_error():
    """An empty batch is an error, not a division by zero."""
    with pytest.raises(ValueError, match="empty"):
        mse_loss([], [])


def test_hinge_rejects_zero_one_labels():
    """0/1 labels given to hinge_loss raise an error that points to +-1 labels."""
    with pytest.raises(ValueError, match="-1 or \\+1"):
        hinge_loss([Value(1.0), Value(2.0)], [0, 1])


def test_bce_rejects_sign_labels():
    """-1/+1 labels given to bce_with_logits raise an error that points to 0/1 labels."""
    with pytest.raises(ValueError, match="0 or 1"):
        bce_with_logits([Value(1.0), Value(2.0)], [-1, 1])


def test_softmax_labels_out_of_range_and_non_integer():
    """A class index outside 0..C-1 is a ValueError; a fractional label is a TypeError."""
    row = [Value(0.0), Value(1.0)]
    with pytest.raises(ValueError, match="2 classes"):
        softmax_cross_entropy([row], [2])
    with pytest.raises(ValueError, match="2 classes"):
        softmax_cross_entropy([row], [-1])
    with pytest.raises(TypeError, match="class index"):
        softmax_cross_entropy([row], [0.5])


def test_softmax_rejects_ragged_rows_and_flat_lists():
    """Rows of different widths, and a flat list mistaken for rows, are clear errors."""
    with pytest.raises(ValueError, match="one logit per class"):
        softmax_cross_entropy([[Value(0.0), Value(1.0)], [Value(0.0)]], [0, 0])
    with pytest.raises(TypeError, match="list of rows"):
        softmax_cross_entropy([Value(0.0), Value(1.0)], [0, 1])


def test_nested_predictions_hint_at_the_model_width():
    """Passing per-example lists where single Values are expected names the likely cause."""
    with pytest.raises(TypeError, match="wider than 1"):
        mse_loss([[Value(0.0), Value(1.0)]], [1.0])


def test_l2_penalty_rejects_negative_alpha():
    """A negative or non-finite alpha is a ValueError, not a silently rewarded weight growth."""
    for alpha in (-1e-4, float("nan")):
        with pytest.raises(ValueError, match="alpha"):
            l2_penalty([Value(1.0)], alpha)
