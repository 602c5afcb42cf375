"""Loss functions on Values: each turns predictions and targets into one Value to call ``backward()`` on.

Every loss is built from the engine's primitives, so its gradient comes from the chain rule like
everything else, and the graph it adds can be drawn and explained. Predictions are Values (a list,
or one Value for one example); targets are plain numbers. Averaging losses return the mean over
examples, so the learning rate does not depend on the batch size.

>>> from chainrule import Value
>>> from chainrule.losses import LOSSES
>>> sorted(LOSSES)
['bce', 'cross_entropy', 'hinge', 'mse', 'sse']
>>> LOSSES["mse"]([Value(1.0), Value(3.0)], [0.0, 1.0]).data
2.5
"""

from __future__ import annotations

import math
import numbers
from typing import Callable, Iterable, Sequence

from .engine import Value

__all__ = ["LOSSES", "bce_with_logits", "hinge_loss", "l2_penalty", "mse_loss", "softmax_cross_entropy",
           "sse_loss"]


# --- helpers --------------------------------------------------------------------------------------

def _is_real(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _as_list(x, what: str) -> list:
    """One Value/number becomes a list of one; numpy arrays and tuples become lists."""
    if isinstance(x, Value) or _is_real(x):
        return [x]
    if hasattr(x, "tolist") and not isinstance(x, (list, tuple)):   # a numpy array
        x = x.tolist()
    if isinstance(x, (str, bytes)) or not isinstance(x, Iterable):
        raise TypeError(f"{what} must be a list of numbers or Values, got {type(x).__name__}")
    return list(x)


def _as_values(preds, what: str) -> list[Value]:
    out = []
    for i, p in enumerate(_as_list(preds, what)):
        if isinstance(p, Value):
            out.append(p)
        elif _is_real(p):
            out.append(Value(p))
        else:
            hint = " (one output per example expected; is the model's last layer wider than 1?)" \
                if isinstance(p, (list, tuple)) else ""
            raise TypeError(f"{what}[{i}] must be a Value or a number, got {type(p).__name__}{hint}")
    if not out:
        raise ValueError(f"{what} is empty: a loss needs at least one example")
    return out


def _as_targets(targets, n: int, what: str, preds_what: str) -> list:
    ts = _as_list(targets, what)
    if len(ts) != n:
        raise ValueError(f"{preds_what} has {n} entries but {what} has {len(ts)}; they must match one to one")
    for i, t in enumerate(ts):
        if not (isinstance(t, Value) or _is_real(t)):
            raise TypeError(f"{what}[{i}] must be a number, got {type(t).__name__} {t!r}")
    return ts


def _total(terms: list[Value]) -> Value:
    # Starting from the first term (not from 0) keeps a constant 0 node out of the graph.
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def _mean(terms: list[Value]) -> Value:
    return _total(terms) * (1.0 / len(terms))


# --- the losses -----------------------------------------------------------------------------------

def sse_loss(preds, targets) -> Value:
    """Sum of squared errors, the lecture's loss: ``sum_i (pred_i - target_i) ** 2``.

    PyTorch: ``torch.nn.functional.mse_loss(preds, targets, reduction="sum")``.

    >>> from chainrule import Value
    >>> p = [Value(0.5), Value(-1.0)]
    >>> loss = sse_loss(p, [1.0, -1.0]); loss.backward()
    >>> loss.data, p[0].grad, p[1].grad
    (0.25, -1.0, 0.0)
    """
    ps = _as_values(preds, "preds")
    ts = _as_targets(targets, len(ps), "targets", "preds")
    return _total([(p - t) ** 2 for p, t in zip(ps, ts)])


def mse_loss(preds, targets) -> Value:
    """Mean squared error: ``(1/n) sum_i (pred_i - target_i) ** 2``.

    PyTorch: ``torch.nn.functional.mse_loss`` (the module ``torch.nn.MSELoss``).

    >>> from chainrule import Value
    >>> p = [Value(0.5), Value(-1.0)]
    >>> loss = mse_loss(p, [1.0, -1.0]); loss.backward()
    >>> loss.data, p[0].grad
    (0.125, -0.5)
    """
    ps = _as_values(preds, "preds")
    ts = _as_targets(targets, len(ps), "targets", "preds")
    return _mean([(p - t) ** 2 for p, t in zip(ps, ts)])


def _check_sign_labels(labels: list, what: str) -> None:
    for i, y in enumerate(labels):
        value = y.data if isinstance(y, Value) else y
        if value not in (1, -1):
            raise ValueError(f"{what}[{i}] is {value!r}, but hinge_loss needs labels -1 or +1 "
                             f"(for 0/1 labels use bce_with_logits, or map them with 2*y - 1)")


def hinge_loss(scores, labels) -> Value:
    """Max-margin (hinge) loss, micrograd's demo: ``(1/n) sum_i relu(1 - y_i * score_i)``, labels ``y_i`` = -1 or +1.

    A score on the right side of the margin (``y * score >= 1``) costs nothing and gets no gradient.
    PyTorch has no ready-made loss for this binary hinge; write it as ``torch.relu(1 - y * scores).mean()``.

    >>> from chainrule import Value
    >>> s = [Value(2.0), Value(0.5), Value(0.5)]
    >>> loss = hinge_loss(s, [1, 1, -1]); loss.backward()
    >>> loss.data, [v.grad for v in s]
    (0.6666666666666666, [0.0, -0.3333333333333333, 0.3333333333333333])
    """
    ss = _as_values(scores, "scores")
    ys = _as_targets(labels, len(ss), "labels", "scores")
    _check_sign_labels(ys, "labels")
    return _mean([(1 - y * s).relu() for s, y in zip(ss, ys)])


def _softplus(z: Value) -> Value:
    # softplus(z) = log(1 + e**z) = relu(z) + log(1 + e**-|z|): exp only ever sees -|z| <= 0, so
    # nothing overflows for any logit. |z| is written 2*relu(z) - z (not relu(z) + relu(-z)) so
    # that at z = 0, where relu's gradient is 0, the chain rule still yields softplus'(0) = 1/2.
    minus_abs = z - 2 * z.relu()
    return z.relu() + (1 + minus_abs.exp()).log()


def bce_with_logits(logits, labels) -> Value:
    """Binary cross-entropy on raw scores (logits), labels 0 or 1, averaged over examples.

    ``(1/n) sum_i [softplus(z_i) - y_i * z_i]`` with ``softplus(z) = relu(z) + log(1 + exp(-|z|))``,
    which equals ``-[y log sigmoid(z) + (1 - y) log(1 - sigmoid(z))]`` but stays finite for any logit
    (``z = 1000`` included); its gradient is ``(sigmoid(z_i) - y_i) / n``. PyTorch:
    ``torch.nn.functional.binary_cross_entropy_with_logits`` (the module ``torch.nn.BCEWithLogitsLoss``).

    >>> from chainrule import Value
    >>> z = [Value(0.0), Value(1000.0)]
    >>> loss = bce_with_logits(z, [1, 0]); loss.backward()
    >>> round(loss.data, 6), z[0].grad, z[1].grad
    (500.346574, -0.25, 0.5)
    """
    zs = _as_values(logits, "logits")
    ys = _as_targets(labels, len(zs), "labels", "logits")
    for i, y in enumerate(ys):
        value = y.data if isinstance(y, Value) else y
        if value not in (0, 1):
            raise ValueError(f"labels[{i}] is {value!r}, but bce_with_logits needs labels 0 or 1 "
                             f"(for -1/+1 labels use hinge_loss, or map them with (y + 1) / 2)")
    return _mean([_softplus(z) - z * y for z, y in zip(zs, ys)])


def _check_class(label, i: int, n_classes: int) -> int:
    if isinstance(label, Value):
        label = label.data
    if _is_real(label) and float(label).is_integer():
        k = int(label)
        if 0 <= k < n_classes:
            return k
        raise ValueError(f"labels[{i}] is {k}, but there are {n_classes} classes: a label must be 0..{n_classes - 1}")
    raise TypeError(f"labels[{i}] must be a whole-number class index, got {type(label).__name__} {label!r}")


def _check_target_row(row, i: int, n_classes: int) -> list:
    """One row of class probabilities (one-hot included): n_classes numbers >= 0 that sum to 1."""
    if isinstance(row, Value) or _is_real(row):
        raise TypeError(f"labels[{i}] is a class number but other labels are rows of probabilities; "
                        f"give every label the same way")
    ts = _as_list(row, f"labels[{i}]")
    if len(ts) != n_classes:
        raise ValueError(f"labels[{i}] has {len(ts)} probabilities but there are {n_classes} classes; "
                         f"a target row needs one probability per class (same shape as the logits)")
    values = []
    for j, t in enumerate(ts):
        value = t.data if isinstance(t, Value) else t
        if not _is_real(value):
            raise TypeError(f"labels[{i}][{j}] must be a number, got {type(value).__name__} {value!r}")
        if not value >= 0 or not math.isfinite(value):
            raise ValueError(f"labels[{i}][{j}] is {value!r}, but a class probability must be a finite number >= 0")
        values.append(value)
    total = math.fsum(values)
    if abs(total - 1.0) > 1e-9:
        raise ValueError(f"labels[{i}] sums to {total!r}, but class probabilities must sum to 1 "
                         f"(within 1e-9); normalise the row, or pass the class number as an int")
    return ts


def _row_max(row: list[Value]) -> Value:
    # max(a, b) = a + relu(b - a), paired off as a tree: the shift is part of the graph, so a
    # compiled replay recomputes it for every new batch instead of reusing the recorded number.
    level = row
    while len(level) > 1:
        paired = [a + (b - a).relu() for a, b in zip(level[0::2], level[1::2])]
        level = paired + level[len(paired) * 2:]
    return level[0]


def softmax_cross_entropy(logit_rows, labels) -> Value:
    """Cross-entropy of a softmax over classes, averaged over examples.

    PyTorch: ``torch.nn.functional.cross_entropy`` (the module ``torch.nn.CrossEntropyLoss``), which
    takes the same two kinds of labels.

    ``logit_rows`` is a list of rows (lists of Values, one row per example). ``labels`` is either a
    list of class indices, or a list of target rows of class probabilities (one-hot or soft: same
    shape as the logits, each entry >= 0, each row summing to 1 within 1e-9). For an example with
    logits ``z`` the loss is ``-sum_j t_j * log_softmax(z)_j``, which for a class index ``c`` is
    ``-log_softmax(z)_c``, with ``log_softmax(z)_j = (z_j - m) - log(sum_k exp(z_k - m))``.

    ``m`` is the row's largest logit, a shift that cancels in value and gradient (its own gradient
    is zero up to rounding) but keeps every ``exp`` at most 1, so large logits cannot overflow. It
    is computed in the graph (``max(a, b) = a + relu(b - a)``), so a compiled replay recomputes it
    for each new batch and stays as safe as the eager loss. The gradient is ``(softmax(z) - t) / n``.

    Class indices pick a logit, so a compiled replay bakes them in; target rows are numbers, fed
    anew to every replay (that is what ``fit(..., compiled=True)`` passes: one-hot rows). A replay
    does not re-check them, so feed it valid rows. One row with one class index works too.

    >>> from chainrule import Value
    >>> row = [Value(2.0), Value(0.0), Value(0.0)]
    >>> loss = softmax_cross_entropy([row], [0]); loss.backward()
    >>> round(loss.data, 6), [round(z.grad, 6) for z in row]
    (0.239545, [-0.213014, 0.106507, 0.106507])
    >>> softmax_cross_entropy([row], [[1.0, 0.0, 0.0]]).data == loss.data    # one-hot: the same
    True
    >>> round(softmax_cross_entropy([row], [[0.5, 0.25, 0.25]]).data, 6)
    1.239545
    """
    if _is_real(labels) or isinstance(labels, Value):      # one example: a row and its label
        logit_rows, labels = [logit_rows], [labels]
    rows = _as_list(logit_rows, "logit_rows")
    if rows and all(isinstance(r, Value) or _is_real(r) for r in rows):
        raise TypeError("logit_rows must be a list of rows (one list of class logits per example); "
                        "got a flat list of numbers. For one example pass [row]; "
                        "for a single logit per example use bce_with_logits")
    rows = [_as_values(row, f"logit_rows[{i}]") for i, row in enumerate(rows)]
    if not rows:
        raise ValueError("logit_rows is empty: a loss needs at least one example")
    n_classes = len(rows[0])
    if n_classes < 2:
        raise ValueError("softmax_cross_entropy needs at least 2 classes (logits per row); "
                         "for a single logit per example use bce_with_logits")
    for i, row in enumerate(rows):
        if len(row) != n_classes:
            raise ValueError(f"logit_rows[{i}] has {len(row)} logits but logit_rows[0] has {n_classes}; "
                             f"every row needs one logit per class")
    ys = _as_list(labels, "labels")
    if len(ys) != len(rows):
        raise ValueError(f"logit_rows has {len(rows)} rows but labels has {len(ys)}; they must match one to one")
    probabilities = any(not (isinstance(y, Value) or _is_real(y)) for y in ys)
    terms = []
    for i, (row, y) in enumerate(zip(rows, ys)):
        m = _row_max(row)
        shifted = [z - m for z in row]
        log_sum_exp = _total([s.exp() for s in shifted]).log()
        if probabilities:
            # -sum_j t_j * log_softmax_j; with a one-hot row only one term is nonzero, and adding
            # exact zeros leaves the class-index value unchanged.
            ts = _check_target_row(y, i, n_classes)
            terms.append(_total([t * (log_sum_exp - s) for t, s in zip(ts, shifted)]))
        else:
            terms.append(log_sum_exp - shifted[_check_class(y, i, n_classes)])
    return _mean(terms)


def l2_penalty(params: Sequence[Value], alpha: float) -> Value:
    """Weight-decay penalty ``alpha * sum_p p * p`` over parameters (micrograd's ``1e-4``), added to a loss.

    PyTorch has no loss for it: add ``alpha * sum((p ** 2).sum() for p in model.parameters())``, or get
    the same gradient ``2 * alpha * p`` from the optimizer: ``torch.optim.SGD(..., weight_decay=2 * alpha)``.

    >>> from chainrule import Value
    >>> w = [Value(3.0), Value(-4.0)]
    >>> reg = l2_penalty(w, 0.5); reg.backward()
    >>> reg.data, w[0].grad, w[1].grad
    (12.5, 3.0, -4.0)
    """
    if not _is_real(alpha) or not math.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
    ps = list(params)
    for i, p in enumerate(ps):
        if not isinstance(p, Value):
            raise TypeError(f"params[{i}] must be a Value, got {type(p).__name__}")
    if not ps or alpha == 0:
        return Value(0.0)
    return alpha * _total([p * p for p in ps])


# Names the training loop and the command line accept (``fit(loss="hinge")``, ``--loss hinge``).
LOSSES: dict[str, Callable[..., Value]] = {
    "bce": bce_with_logits,
    "cross_entropy": softmax_cross_entropy,
    "hinge": hinge_loss,
    "mse": mse_loss,
    "sse": sse_loss,
}
