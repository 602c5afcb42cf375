"""Training: ``fit`` runs the loop, ``History`` remembers it, ``predict`` and ``accuracy`` read a model.

The loop inside ``fit`` is the lecture's, written out so it reads top to bottom::

    scores = [model(x) for x in Xb]                  # forward
    loss = data_loss(scores, yb) + l2 * sum(p * p)
    optimizer.zero_grad()                             # zero grads
    loss.backward()                                   # backward
    optimizer.step()                                  # update
    step 12 | loss 0.4182 | acc 87.0% | lr 0.892      # log

(``compiled=True`` replays one example's recorded loss over each batch instead; the steps
themselves live in :mod:`chainrule.steps`.)

Labels. Datasets number their classes 0..C-1, and each loss wants its own kind of target, so
``fit`` converts: ``hinge`` (and the squared errors ``mse``/``sse`` on two classes) use -1/+1,
with 0 becoming -1; ``bce`` uses 0/1, with -1 becoming 0; ``cross_entropy`` uses the class numbers
(as one-hot rows when ``compiled=True``, so that one recording serves every batch).
A model with one output is a binary classifier (score > 0 means class 1, or +1); a model whose last
layer has C > 1 outputs scores C classes and trains with ``loss="cross_entropy"``.

>>> import random; random.seed(0)
>>> from chainrule import MLP
>>> model = MLP(2, [8, 1], activation="relu", output_activation="linear")
>>> X = [[0.0, 1.0], [1.0, 0.0], [0.0, -1.0], [-1.0, 0.0]]
>>> history = fit(model, X, [1, 1, 0, 0], steps=30, progress=False, seed=0)
>>> history.accuracy[-1], predict(model, X).shape
(1.0, (4,))
"""

from __future__ import annotations

import itertools
import math
import numbers
import random
import sys
import weakref
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

from .data import minibatches
from .engine import Value, collector_paused, no_grad
from .losses import LOSSES, bce_with_logits, hinge_loss, mse_loss, softmax_cross_entropy, sse_loss
from .nn import MLP
from .optim import OPTIMIZERS, SGD, Optimizer
from .steps import EagerSteps, ReplayedSteps, WholeBatchSteps, objective, whole_batch_replay
from .text import number

__all__ = ["DivergedError", "History", "accuracy", "evaluate", "fit", "predict", "seed_everything"]


class DivergedError(ArithmeticError):
    """Training's loss became inf or nan: the numbers blew up, usually from too large a learning rate.

    ``.step`` is the step whose loss was not finite, ``.loss`` that loss, ``.history`` what was
    measured up to it (the model keeps the weights from before that step's update)."""

    def __init__(self, message: str, step: int, loss: float, history: "History"):
        super().__init__(message)
        self.step = step
        self.loss = loss
        self.history = history

Callback = Callable[[int, "History", MLP], "bool | None"]

# What each loss expects as targets (see the module docstring): "sign" is -1/+1, "binary" 0/1,
# "class" the class numbers. A loss function not listed here gets the labels exactly as given.
_TARGET_KIND = {hinge_loss: "sign", mse_loss: "sign", sse_loss: "sign",
                bce_with_logits: "binary", softmax_cross_entropy: "class"}


def seed_everything(seed: int) -> None:
    """Seed every random source chainrule uses (Python's ``random`` and numpy's global generator).

    Call it once before making the data and the model, and pass the same ``seed`` to ``fit`` so
    the batch order repeats too: then a run repeats exactly.

    >>> seed_everything(7); a = random.random()
    >>> seed_everything(7); a == random.random()
    True
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be a whole number, got {type(seed).__name__} {seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)


@dataclass
class History:
    """What ``fit`` measured: one entry per step in ``loss``, ``accuracy`` and ``lr``; test
    results at the log steps and the last step (``test_step`` says which).

    ``loss`` is the objective that was minimised on the step's batch (the data loss plus the L2
    penalty); ``accuracy`` is the fraction of that batch classified right before the update;
    ``lr`` is the learning rate the step used. ``test_loss`` is the same objective on the test set.
    ``stopped_early`` is the step at which a callback stopped training, else None.
    """
    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    test_step: list[int] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    stopped_early: int | None = None

    def __len__(self) -> int:
        return len(self.loss)

    def to_dict(self) -> dict:
        """Plain lists and numbers, ready for ``json.dump``."""
        return {"loss": self.loss, "accuracy": self.accuracy, "lr": self.lr, "test_step": self.test_step,
                "test_loss": self.test_loss, "test_accuracy": self.test_accuracy,
                "stopped_early": self.stopped_early}

    def __repr__(self) -> str:
        if not self.loss:
            return "History(0 steps)"
        text = f"History({len(self)} steps, loss {number(self.loss[-1])}, acc {self.accuracy[-1]:.1%}"
        if self.test_loss:
            text += f", test loss {number(self.test_loss[-1])}, test acc {self.test_accuracy[-1]:.1%}"
        return text + ")"


# --- reading a model ------------------------------------------------------------------------------

def accuracy(scores, y) -> float:
    """The fraction of examples classified right, from scores (numbers or Values) and labels.

    One score per example is a binary classifier: score > 0 predicts the positive class, and a
    label counts as positive when it is > 0 (so 0/1 and -1/+1 labels both work). Rows of C scores
    predict the class with the largest score, labels being class numbers 0..C-1.

    >>> accuracy([2.0, -1.0, 0.5], [1, 0, 0])
    0.6666666666666666
    >>> accuracy([[0.1, 0.9], [3.0, -1.0]], [1, 0])
    1.0
    """
    s = _to_array(scores)
    y = np.asarray(y).reshape(-1)
    if len(s) != len(y):
        raise ValueError(f"scores has {len(s)} examples but y has {len(y)}; they must match one to one")
    if len(s) == 0:
        raise ValueError("accuracy of no examples is undefined: scores and y are empty")
    if s.ndim == 2 and s.shape[1] > 1:
        return float(np.mean(np.argmax(s, axis=1) == y))
    return float(np.mean((s.reshape(-1) > 0) == (y > 0)))


def predict(model: MLP, X, compiled: bool = False) -> np.ndarray:
    """The model's outputs for every row of ``X``, as a numpy array: shape (n,) for a model with
    one output, (n, C) for C outputs. No graph is kept (``no_grad``).

    ``compiled=True`` records the model once on one example and evaluates all rows at once with
    numpy (:func:`chainrule.vmap`): the same numbers, much faster for many rows. The recording is
    kept for the next call and made again when the model's structure changed (a layer, an
    activation or a parameter object); new weights need no new recording.

    >>> import random; random.seed(0)
    >>> from chainrule import MLP
    >>> model = MLP(2, [3, 1])
    >>> out = predict(model, [[1.0, 2.0], [0.0, 0.0]])
    >>> out.shape, bool(out[0] == model([1.0, 2.0]).data)
    ((2,), True)
    """
    X = _as_matrix(X, model.nin, "X")
    if compiled:
        return _compiled_forward(model)(X)
    with no_grad(), collector_paused():
        return _to_array([model(row) for row in X.tolist()])


_RECORDED_MODELS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _compiled_forward(model: MLP):
    """``vmap(model)`` for ``model``, recorded once and kept while the model's structure stays."""
    from .replay import structure_of, vmap

    kept = _RECORDED_MODELS.get(model)
    structure = structure_of(model)
    if kept is None or kept[0] != structure:
        held = weakref.ref(model)       # weakly: the kept recording must not keep its model alive

        def forward(x):
            return held()(x)
        kept = _RECORDED_MODELS[model] = (structure, vmap(forward, reduce=None))
    return kept[1]


def _to_array(scores) -> np.ndarray:
    """Numbers, Values, or rows of them -> a float array of shape (n,) or (n, C)."""
    if isinstance(scores, np.ndarray):
        return scores.astype(np.float64, copy=False)
    if isinstance(scores, Value):
        scores = [scores]
    rows = []
    for s in scores:
        if isinstance(s, (list, tuple, np.ndarray)):
            rows.append([v.data if isinstance(v, Value) else float(v) for v in s])
        else:
            rows.append(s.data if isinstance(s, Value) else float(s))
    return np.asarray(rows, dtype=np.float64)


def _as_matrix(X, nin: int, name: str) -> np.ndarray:
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a table of numbers (n examples x {nin} features)") from None
    if X.ndim == 1 and nin == 1:
        X = X.reshape(-1, 1)
    if X.ndim != 2 or X.shape[1] != nin:
        raise ValueError(f"{name} has shape {X.shape}, but the model takes {nin} inputs: "
                         f"{name} must be n examples x {nin} features")
    if len(X) == 0:
        raise ValueError(f"{name} has no examples")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name} contains nan or inf")
    return X


# --- the loss and its targets ---------------------------------------------------------------------

def _resolve_loss(loss, width: int) -> Callable:
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose one of: {', '.join(LOSSES)}")
        name, fn = loss, LOSSES[loss]
    elif callable(loss):
        name, fn = getattr(loss, "__name__", "loss"), loss
    else:
        raise TypeError(f"loss must be a name ({', '.join(LOSSES)}) or a function, got {type(loss).__name__}")
    kind = _TARGET_KIND.get(fn)
    if kind == "class" and width < 2:
        raise ValueError(f"loss {name!r} needs one output per class, but the model's last layer has 1 output; "
                         f"for two classes with one output use 'hinge' or 'bce'")
    if kind in ("sign", "binary") and width > 1:
        raise ValueError(f"loss {name!r} scores one output per example, but the model's last layer has "
                         f"{width} outputs; for several classes use loss='cross_entropy'")
    return fn


def _targets(loss_fn: Callable, y, n: int, name: str) -> np.ndarray:
    """The labels ``y`` in the form ``loss_fn`` wants (see the module docstring)."""
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"{name} must hold one label per example ({n}), got shape {y.shape}")
    kind = _TARGET_KIND.get(loss_fn)
    labels = set(np.unique(y).tolist())
    if kind == "class":
        if not all(float(v).is_integer() and v >= 0 for v in labels):
            raise ValueError(f"{name} must be class numbers 0, 1, 2, ... for cross_entropy, got {sorted(labels)[:5]}")
        return y.astype(np.int64)
    if kind in ("sign", "binary") and (labels <= {0, 1} or labels <= {-1, 1}):
        return np.where(y > 0, 1.0, -1.0 if kind == "sign" else 0.0)
    if kind == "binary" or loss_fn is hinge_loss:
        raise ValueError(f"{name} must hold two classes (0/1 or -1/+1) for {loss_fn.__name__}, got "
                         f"{sorted(labels)[:5]}; a model with one output per class and loss='cross_entropy' "
                         f"handles several classes")
    # mse and sse also fit real-valued targets: those pass as they are.
    return y.astype(np.float64) if kind == "sign" else y


def _resolve_optimizer(optimizer, params: list[Value], steps: int) -> Optimizer:
    if optimizer is None:
        # micrograd's demo schedule, stretched over however many steps there are.
        return SGD(params, lr=lambda k: 1.0 - 0.9 * k / steps)
    if isinstance(optimizer, str):
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}")
        return OPTIMIZERS[optimizer](params)
    if not hasattr(optimizer, "step") or not hasattr(optimizer, "zero_grad"):
        raise TypeError(f"optimizer must be None, a name ({', '.join(OPTIMIZERS)}) or an optimizer object "
                        f"with step() and zero_grad(), got {type(optimizer).__name__}")
    return optimizer


def _batches(X: np.ndarray, t: np.ndarray, batch_size: int | None, seed: int | None) -> Iterator[tuple]:
    """Endless (rows, targets) batches as arrays: the whole set every step, or shuffled minibatches epoch
    after epoch, epoch ``e`` shuffled with ``seed + e`` so that one seed fixes every batch."""
    if not batch_size or batch_size >= len(X):
        while True:
            yield X, t
    base = seed if seed is not None else random.randrange(2**31)
    for epoch in itertools.count():
        yield from minibatches(X, t, batch_size, seed=(base + epoch) % 2**32)


# --- the loop -------------------------------------------------------------------------------------

def fit(model: MLP, X, y, *, loss="hinge", optimizer=None, steps: int = 100, batch_size: int | None = None,
        l2: float = 0.0, X_test=None, y_test=None, callbacks: Sequence[Callback] = (), progress: bool = True,
        compiled: bool = False, seed: int | None = None, log_every: int | None = 10,
        replay_checks: int = 2, check_finite: bool = True) -> History:
    """Train ``model`` on ``(X, y)`` for ``steps`` optimizer steps; returns the :class:`History`.

    - ``loss``: a name from ``chainrule.losses.LOSSES`` (``hinge``, ``bce``, ``cross_entropy``,
      ``mse``, ``sse``) or a function ``loss(scores, targets) -> Value``. Labels are converted to
      what the loss wants (module docstring: 0/1 becomes -1/+1 for hinge).
    - ``optimizer``: an optimizer over ``model.parameters()``, a name (``sgd``, ``adam``,
      ``adamw``) with that optimizer's defaults, or None for micrograd's SGD with the rate falling
      linearly from 1.0 to 0.1 over the run (``lr = 1.0 - 0.9 * k / steps``).
    - ``batch_size``: None or 0 trains on the whole set every step; otherwise shuffled minibatches.
    - ``l2``: adds ``l2 * sum(p * p)`` over all parameters to the loss (micrograd uses 1e-4).
    - ``X_test``, ``y_test``: evaluated without a graph at every log step and at the end.
    - ``callbacks``: functions ``cb(step, history, model)`` called after every update (``history``
      already holds that step's loss); a callback that returns True stops training after that step
      (``history.stopped_early`` records which), with a last test evaluation and log line.
    - ``progress``: a tqdm progress bar with loss and accuracy (when tqdm is installed) and a log
      line every ``log_every`` steps (and on the last); ``progress=False`` prints nothing.
    - ``compiled``: record ONE example's loss once and replay it over every batch with numpy
      (:func:`chainrule.vmap`), with the parameters and the optimizer's state in arrays, instead of
      rebuilding the graph every step. The model's Values are brought up to date when ``fit``
      returns and before each callback (see :mod:`chainrule.steps`). A loss function of your own
      may not be a sum of per-example terms, so it is recorded on the whole batch, once per batch
      size (:func:`chainrule.compile`).
    - ``replay_checks``: with ``compiled``, the first this many replayed steps also run one
      example eagerly and raise :class:`~chainrule.ReplayMismatchError` if the replay disagrees
      (the loss depends on numbers in a way a recording cannot see). 0 turns the guard off.
    - ``seed``: seeds ``random`` and numpy (:func:`seed_everything`) and fixes the batch order.
    - ``check_finite``: when a step's loss is inf or nan, stop and raise :class:`DivergedError`
      ("loss became inf at step 4: lower the learning rate"), before that step's update;
      ``check_finite=False`` keeps going whatever the numbers do.

    >>> import random; random.seed(1)
    >>> from chainrule import MLP
    >>> model = MLP(1, [4, 1], activation="relu", output_activation="linear")
    >>> h = fit(model, [[-2.0], [-1.0], [1.0], [2.0]], [0, 0, 1, 1], steps=20, progress=False)
    >>> len(h.loss), h.loss[-1] < h.loss[0]
    (20, True)
    """
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"steps must be a positive whole number, got {steps!r}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 0):
        raise ValueError(f"batch_size must be None, 0 (the whole set) or a positive whole number, got {batch_size!r}")
    if log_every is not None and (isinstance(log_every, bool) or not isinstance(log_every, numbers.Integral) or log_every < 0):
        raise ValueError(f"log_every must be None or a whole number >= 0, got {log_every!r}")
    if isinstance(l2, bool) or not isinstance(l2, numbers.Real) or not 0 <= l2 < float("inf"):
        raise ValueError(f"l2 must be a finite number >= 0, got {l2!r}")
    width = model.nouts[-1]
    loss_fn = _resolve_loss(loss, width)
    X = _as_matrix(X, model.nin, "X")
    t = _targets(loss_fn, y, len(X), "y")
    test = None
    if (X_test is None) != (y_test is None):
        raise ValueError("give both X_test and y_test, or neither")
    if X_test is not None:
        X_test = _as_matrix(X_test, model.nin, "X_test")
        test = (X_test, _targets(loss_fn, y_test, len(X_test), "y_test"))
    if seed is not None:
        seed_everything(seed)
    optimizer = _resolve_optimizer(optimizer, model.parameters(), steps)
    trainer = _trainer(model, loss_fn, float(l2), optimizer, width, compiled, replay_checks)
    batches = _batches(X, t, batch_size, seed)
    history = History()
    bar, say = _progress(steps) if progress else (None, None)

    def guard(value: float) -> None:
        # Called by each step between its forward pass and its update: a loss that is inf or nan
        # stops training there (the Values as they were before the update).
        if check_finite and not math.isfinite(value):
            trainer.sync()
            _diverged(k, value, optimizer, history)

    with collector_paused(), (bar if bar is not None else nullcontext()):
        for k in range(steps):
            Xb, tb = next(batches)
            loss, scores = trainer.step(Xb, tb, guard)         # forward, zero grads, backward, update

            history.loss.append(loss)                          # log
            history.accuracy.append(accuracy(scores, tb))
            history.lr.append(float(getattr(optimizer, "lr", math.nan)))   # an optimizer of one's own may have none
            stop = False
            if callbacks:
                trainer.sync()                                 # the Values as the callbacks should see them
                stop = any([bool(cb(k, history, model)) for cb in callbacks])
                trainer.resume()
            if stop:
                history.stopped_early = k
            if stop or k == steps - 1 or (log_every and k % log_every == 0):
                if test is not None:
                    _evaluate(trainer, test, k, history)
                if say is not None and log_every:
                    say(_log_line(k, history))
            if bar is not None:
                bar.set_postfix({"loss": number(loss), "acc": f"{history.accuracy[-1]:.1%}"}, refresh=False)
                bar.update(1)
            if stop:
                break
        trainer.sync()
    return history


# The live view (chainrule.liveview) steps its own loop with these two.
_objective = objective
_compiled_objective = whole_batch_replay


def _trainer(model: MLP, loss_fn: Callable, l2: float, optimizer, width: int, compiled: bool, checks: int):
    """How each step runs (:mod:`chainrule.steps`): eagerly, replayed per example over the batch
    (built-in losses, which are means or sums of per-example terms), or replayed whole-batch."""
    if isinstance(checks, bool) or not isinstance(checks, numbers.Integral) or checks < 0:
        raise ValueError(f"replay_checks must be a whole number >= 0, got {checks!r}")
    n_classes = width if _TARGET_KIND.get(loss_fn) == "class" else None
    if not compiled:
        return EagerSteps(model, loss_fn, l2, optimizer)
    if loss_fn in _TARGET_KIND:
        return ReplayedSteps(model, loss_fn, l2, optimizer, n_classes, int(checks))
    return WholeBatchSteps(model, loss_fn, l2, optimizer, n_classes, int(checks))


def _diverged(k: int, value: float, optimizer, history: History):
    rate = getattr(optimizer, "lr", None)
    shown = f" (lr {float(rate):g})" if isinstance(rate, numbers.Real) or hasattr(rate, "__float__") else ""
    raise DivergedError(f"loss became {value} at step {k}{shown}: lower the learning rate; "
                        "fit(..., check_finite=False) keeps going anyway", k, value, history)


def evaluate(model: MLP, X, y, *, loss="hinge", l2: float = 0.0) -> tuple[float, float]:
    """``(loss, accuracy)`` of ``model`` on ``(X, y)``, computed without a graph, with the labels
    converted as ``fit`` converts them; ``loss`` includes the L2 penalty when ``l2`` > 0.

    >>> import random; random.seed(0)
    >>> from chainrule import MLP
    >>> model = MLP(1, [1], activation="linear")
    >>> model.layers[0].neurons[0].w[0].data, model.layers[0].neurons[0].b.data = 2.0, 0.0
    >>> evaluate(model, [[1.0], [-1.0], [0.25]], [1, 0, 0])     # scores 2, -2, 0.5
    (0.5, 0.6666666666666666)
    """
    loss_fn = _resolve_loss(loss, model.nouts[-1])
    X = _as_matrix(X, model.nin, "X")
    t = _targets(loss_fn, y, len(X), "y")
    with no_grad(), collector_paused():
        loss_value, scores = objective(model, loss_fn, float(l2))(X.tolist(), t.tolist())
    return loss_value.data, accuracy(scores, t)


def _evaluate(trainer, test: tuple, k: int, history: History) -> None:
    loss_value, scores = trainer.evaluate(*test)
    history.test_step.append(k)
    history.test_loss.append(loss_value)
    history.test_accuracy.append(accuracy(scores, test[1]))


def _log_line(k: int, history: History) -> str:
    line = f"step {k} | loss {number(history.loss[-1])} | acc {history.accuracy[-1]:.1%} | lr {history.lr[-1]:.3g}"
    if history.test_step and history.test_step[-1] == k:
        line += f" | test loss {number(history.test_loss[-1])} | test acc {history.test_accuracy[-1]:.1%}"
    return line


def _progress(steps: int):
    """(tqdm bar on stderr, function printing a log line), or (None, print) without tqdm, or when
    stderr is not a terminal (a log file, a pipe, CI): there a bar's redraws would run into the
    log lines, so only the plain lines are printed."""
    isatty = getattr(sys.stderr, "isatty", None)
    in_jupyter = type(sys.stderr).__name__ == "OutStream"      # ipykernel draws tqdm's bar fine
    if not (in_jupyter or (callable(isatty) and isatty())):
        return None, print
    try:
        from tqdm import tqdm
    except ImportError:
        return None, print
    bar = tqdm(total=steps, desc="training", unit="step", file=sys.stderr, dynamic_ncols=True)

    def say(line: str) -> None:
        # tqdm.write lifts the bar, prints the line to stdout above it, and redraws the bar.
        tqdm.write(line, file=sys.stdout)

    return bar, say
