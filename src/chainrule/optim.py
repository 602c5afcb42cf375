"""Optimizers: turn each parameter's ``.grad`` into a change of its ``.data``.

They touch nothing but ``.data`` and ``.grad`` (no graph is built), and follow PyTorch's
``torch.optim`` update formulas operation for operation, so the same gradients give the same
parameters (the tests check this to 1e-12).

The learning rate is a number or a function of the step number ``k`` (0 for the first step), like
micrograd's decaying rate ``lambda k: 1.0 - 0.9 * k / 100``. In PyTorch a function of the step is
``torch.optim.lr_scheduler.LambdaLR(opt, schedule)`` on an optimizer made with ``lr=1.0``, stepped after
each ``opt.step()``.

>>> from chainrule import Value
>>> from chainrule.optim import SGD
>>> w = Value(1.0)
>>> opt = SGD([w], lr=lambda k: 1.0 - 0.9 * k / 100)
>>> w.grad = 0.5; opt.step(); w.data, opt.lr, opt.steps
(0.5, 1.0, 1)
>>> opt.zero_grad(); w.grad
0.0

**One rule, floats or arrays.** Each optimizer writes its update once, in ``_rule(m, lr, t)``:
it works out the numbers that step ``t`` uses for every parameter alike, and returns the update
``update(p, g, *state) -> (p, *state)`` written with ``+ - *``, ``m.sqrt`` and ``m.ieee_div``, the
way each row of the table of primitives is written against a math namespace ``m``
(:mod:`chainrule.mathspace`).
``step_arrays()`` calls that update on numpy arrays (``ARRAY``) holding every parameter, which is
how compiled training updates a model with no Python work per parameter. ``step()`` calls it on
floats (``SCALAR``), one call per parameter, for a few parameters; from ``_EAGER_ARRAYS_FROM``
(64) parameters on, it gathers every ``.data`` and ``.grad`` into two arrays, runs the same update
once on them, and writes ``.data`` back, which is faster (at 337 parameters, micrograd's demo: Adam
about 4x, SGD with momentum 2x, plain SGD 1.3x). Both give the very same numbers: numpy's float64
``+ - * /`` and ``sqrt`` round exactly as Python's floats do, and a division by zero (``eps=0``,
a parameter whose gradient was always 0) is ``nan`` or ``inf`` on both (``m.ieee_div``), as in
``torch.optim``, never a ZeroDivisionError on one and a number on the other:

>>> opt = SGD([Value(1.0), Value(2.0)], lr=0.5)
>>> state = opt.array_state()             # the parameters' .data as one array
>>> import numpy as np
>>> opt.step_arrays(state, np.array([1.0, -1.0])); state.p, opt.steps
(array([0.5, 2.5]), 1)
>>> [p.data for p in opt.params]          # the Values wait for write_back
[1.0, 2.0]
>>> state.write_back(); [p.data for p in opt.params]
[0.5, 2.5]

The rule for arrays: while training runs on an :class:`ArrayState`, the parameters and the
optimizer's moments live in its arrays, and the ``Value``\\ s are brought up to date when
``write_back()`` is called. ``fit`` calls it when it returns, before callbacks, before ``predict``
and before saving; eager ``step()`` then continues exactly where the arrays left off (and refuses
to run while array steps are not yet written back, rather than step from stale numbers).
"""

from __future__ import annotations

import math
import numbers
from typing import Callable, Iterable, Union

from .engine import Value
from .mathspace import ARRAY, SCALAR, floats_into

__all__ = ["Adam", "AdamW", "ArrayState", "OPTIMIZERS", "Optimizer", "SGD"]

LearningRate = Union[float, Callable[[int], float]]

_PIECE = 16384      # elements per piece in step_arrays: 128 KiB per array, cache-sized
# From this many parameters on, eager step() runs the rule once on arrays instead of once per
# parameter. Measured (one thread, best of many runs): at 64 parameters the array path is 2
# microseconds slower than the float loop for plain SGD, as fast for momentum and 2x faster for
# Adam; at 337 it takes 22 instead of 30 (SGD), 24 instead of 45 (momentum), 27 instead of 107
# (Adam) microseconds. Below, numpy's fixed cost per call (some 6 microseconds) wins.
_EAGER_ARRAYS_FROM = 64


def _check_number(name: str, x, low: float = 0.0, high: float | None = None, high_open: bool = True) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real) or not math.isfinite(x):
        raise ValueError(f"{name} must be a finite number, got {x!r}")
    x = float(x)
    if x < low:
        raise ValueError(f"{name} must be >= {low:g}, got {x!r}")
    if high is not None and (x >= high if high_open else x > high):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high:g}, got {x!r}")
    return x


class Optimizer:
    """What every optimizer shares: the parameter list, the learning rate (schedule), step counting,
    and the two ways of running its ``_rule``: ``step()`` on the Values, ``step_arrays()`` on arrays.

    ``.steps`` counts the steps made (eager and array steps alike). ``.lr`` is the learning rate
    the last step used (before the first step: the rate the first step will use), the number to
    log after a step. Assigning ``opt.lr = 0.1`` (or a new schedule function) changes the rate of
    later steps.

    A subclass names its per-parameter state in ``_slots`` (Adam's ``("exp_avg", "exp_avg_sq")``),
    each starting at 0.0, and defines ``_rule(m, lr, t)``, which returns step ``t``'s update
    (``t = 1, 2, ...``, learning rate ``lr``): ``update(p, g, *slots) -> (p, *slots)``, the new
    parameter and state from the old, on floats or arrays alike as ``m`` says. Written with
    augmented assignments (``p -= lr * d``), it updates arrays in place and rebinds floats; it must
    never assign into ``g`` (on arrays that is the caller's gradient). A rule that works on floats
    only (``math.sqrt``, an ``if`` on a number) still steps eagerly: it is tried on arrays once, and
    its eager steps stay on floats.
    """

    _slots: tuple[str, ...] = ()

    def __init__(self, params: Iterable[Value], lr: LearningRate):
        if isinstance(params, Value):
            params = [params]
        try:
            self.params: list[Value] = list(params)
        except TypeError:
            raise TypeError(f"params must be a list of Values (e.g. model.parameters()), "
                            f"got {type(params).__name__}") from None
        if not self.params:
            raise ValueError("the optimizer got an empty parameter list")
        seen: set[int] = set()
        for i, p in enumerate(self.params):
            if not isinstance(p, Value):
                raise TypeError(f"params[{i}] must be a Value, got {type(p).__name__}")
            if id(p) in seen:
                raise ValueError(f"params[{i}] appears twice in the parameter list; it would be updated twice per step")
            seen.add(id(p))
        self.steps = 0
        self.lr = lr
        self._last_lr: float | None = None
        # Per-parameter state: lists of floats, or arrays when eager steps run on arrays (_slot);
        # an ArrayState copies them into arrays of its own.
        self._state: dict[str, list] = {name: [0.0] * len(self.params) for name in self._slots}
        self._unwritten: ArrayState | None = None    # an ArrayState with steps the Values have not seen
        self._rule_runs_on_arrays: bool | None = None  # tried on first need (_agrees_on_arrays)

    @property
    def lr(self) -> float:
        if self._last_lr is not None:
            return self._last_lr
        return self._rate(self.steps)

    @lr.setter
    def lr(self, lr: LearningRate) -> None:
        if callable(lr):
            self._schedule = lr
            self._rate(self.steps)                   # fail now, not in the middle of training
        else:
            self._schedule = _check_number("lr", lr)
        self._last_lr = None

    def _rate(self, k: int) -> float:
        if not callable(self._schedule):
            return self._schedule
        try:
            return _check_number(f"lr({k})", self._schedule(k))
        except ValueError as err:
            raise ValueError(f"the learning-rate schedule gave a bad rate at step {k}: {err}") from None

    def _rule(self, m, lr: float, t: int) -> Callable[..., tuple]:
        raise NotImplementedError

    def step(self) -> None:
        """Update every parameter's ``.data`` from its ``.grad``, with this step's learning rate."""
        if self._unwritten is not None:
            raise RuntimeError("this optimizer made array steps (step_arrays) that the Values have not seen: "
                               "call write_back() on that ArrayState before step() (opt.array_state() "
                               "also writes them back)")
        lr, t = self._rate(self.steps), self.steps + 1
        if self._on_arrays():
            self._step_gathered(lr, t)
        else:
            self._step_floats(lr, t)
        self.steps, self._last_lr = t, lr

    def _on_arrays(self) -> bool:
        """Whether eager steps keep the per-parameter state as arrays (run the rule on arrays)."""
        if len(self.params) < _EAGER_ARRAYS_FROM:
            return False
        if self._rule_runs_on_arrays is None:
            self._rule_runs_on_arrays = self._agrees_on_arrays()
        return self._rule_runs_on_arrays

    def _agrees_on_arrays(self) -> bool:
        """Whether ``_rule`` gives on arrays what it gives on floats, tried once on a few numbers. The
        built-in rules do; a subclass's rule written with ``math.sqrt`` or a Python ``if`` on a number
        works on floats only, and its eager steps stay on floats (step_arrays still needs arrays)."""
        import numpy as np

        p, g = [0.5, -1.5, 2.0], [0.25, -2.0, 0.0]
        slots = [[0.75, 0.125, 1.0] for _ in self._slots]
        try:
            for t in (1, 2):
                floats = [self._rule(SCALAR, 0.1, t)(*column) for column in zip(p, g, *slots)]
                arrays = [np.array(x, dtype=np.float64) for x in (p, g, *slots)]
                with np.errstate(all="ignore"):
                    got = self._rule(ARRAY, 0.1, t)(*arrays)
                if [np.asarray(x, dtype=np.float64).tolist() for x in got] != [list(x) for x in zip(*floats)]:
                    return False
        except Exception:           # whatever fails on arrays (or on these floats): keep to floats
            return False
        return True

    def _slot(self, name: str, arrays: bool):
        """State slot ``name`` in the form the eager step uses (a list of floats, or an array);
        converted at most once, when the form changes (after an ArrayState wrote it back)."""
        values = self._state[name]
        if isinstance(values, list) == arrays:          # a list where arrays are wanted, or the other way
            if arrays:
                import numpy as np
                values = np.array(values, dtype=np.float64)
            else:
                values = values.tolist()
            self._state[name] = values
        return values

    def _step_floats(self, lr: float, t: int) -> None:
        update, params = self._rule(SCALAR, lr, t), self.params
        # One loop per number of state slots, so the work per parameter is the update and little else.
        slots = [self._slot(name, False) for name in self._slots]
        if not slots:
            for p in params:
                (p.data,) = update(p.data, p.grad)
        elif len(slots) == 1:
            (a,) = slots
            for i, p in enumerate(params):
                p.data, a[i] = update(p.data, p.grad, a[i])
        else:
            a, b = slots
            for i, p in enumerate(params):
                p.data, a[i], b[i] = update(p.data, p.grad, a[i], b[i])

    def _step_gathered(self, lr: float, t: int) -> None:
        import numpy as np

        params = self.params
        p, g = np.empty(len(params)), np.empty(len(params))
        # List comprehensions, not map(attrgetter): Python 3.11+ specialises a comprehension's slot
        # reads, which makes them about twice as fast (5 against 12 µs at 337 Values).
        floats_into(p, [v.data for v in params])
        floats_into(g, [v.grad for v in params])
        _run_rule(self._rule(ARRAY, lr, t), p, g, [self._slot(name, True) for name in self._slots])
        for v, x in zip(params, p.tolist()):
            v.data = x

    def array_state(self) -> "ArrayState":
        """The parameters' ``.data`` and this optimizer's per-parameter state, copied into numpy arrays
        (in the order of ``self.params``), for :meth:`step_arrays`. It continues the state that eager
        steps built (Adam's moments, SGD's momentum); array steps of an earlier ArrayState that were
        not written back are written back first, so no step is lost."""
        if self._unwritten is not None:
            self._unwritten.write_back()
        return ArrayState(self)

    def step_arrays(self, state: "ArrayState", grad) -> None:
        """One update of ``state`` in place from ``grad``, a 1-D array with one gradient per parameter
        in the order of ``self.params``: the same rule as :meth:`step`, run once on whole arrays.
        Advances ``.steps`` and the learning-rate schedule like ``step()``; the Values are left as
        they are until ``state.write_back()``."""
        import numpy as np

        if not isinstance(state, ArrayState) or state.optimizer is not self:
            raise ValueError("step_arrays needs the ArrayState this optimizer's array_state() returned")
        if state._steps != self.steps:
            raise RuntimeError(f"this ArrayState was made at step {state._steps} but the optimizer has made "
                               f"{self.steps} steps since (eager step() calls, or another ArrayState); "
                               f"call opt.array_state() for a fresh one")
        grad = np.asarray(grad, dtype=np.float64)
        if grad.shape != state.p.shape:
            raise ValueError(f"grad must be a 1-D array of {len(state.p)} gradients (one per parameter, "
                             f"in the order of opt.params), got shape {grad.shape}")
        lr, t = self._rate(self.steps), self.steps + 1
        _run_rule(self._rule(ARRAY, lr, t), state.p, grad, [state.slots[name] for name in self._slots])
        self.steps, self._last_lr = t, lr
        state._steps = t
        self._unwritten = state

    def zero_grad(self) -> None:
        """Set every parameter's ``.grad`` to 0 (before each ``backward()``)."""
        for p in self.params:
            p.grad = 0.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.params)} parameters, lr={self.lr:g}, steps={self.steps})"


def _run_rule(update: Callable[..., tuple], p, grad, slots: list) -> None:
    """Run an optimizer's update on arrays: ``p`` and every array of ``slots`` in place, from ``grad``.

    The rule runs on consecutive pieces of the arrays, each small enough that its temporaries stay
    in the CPU cache (measured: over twice as fast as whole arrays at 200,000 parameters). Its
    augmented assignments (p -= ..., exp_avg += ...) update the pieces in place, so views into
    ``p`` stay valid; a result that is a new array (SGD's first momentum buffer is the gradient
    itself) is copied in. A division by zero or an overflow gives nan or inf, as in torch, silently.
    """
    import numpy as np

    arrays = (p, grad, *slots)
    pieces = [arrays] if len(grad) <= _PIECE else \
        [[a[start:start + _PIECE] for a in arrays] for start in range(0, len(grad), _PIECE)]
    with np.errstate(all="ignore"):
        for piece, g, *old in pieces:
            for s, x in zip((piece, *old), update(piece, g, *old)):
                if x is not s:
                    s[...] = x


class ArrayState:
    """An optimizer's parameters and per-parameter state as numpy arrays (``Optimizer.array_state()``).

    ``p`` holds every parameter's value (float64, in the order of ``optimizer.params``) and
    ``slots`` the state by name (``slots["exp_avg"]`` for Adam). ``step_arrays`` updates them in
    place; ``write_back()`` copies them to the Values' ``.data`` and to the optimizer's own state.
    """

    def __init__(self, optimizer: Optimizer):
        import numpy as np

        self.optimizer = optimizer
        self.p = np.array([p.data for p in optimizer.params], dtype=np.float64)
        self.slots = {name: np.array(values, dtype=np.float64) for name, values in optimizer._state.items()}
        self._steps = optimizer.steps

    def write_back(self) -> None:
        """Bring the Values and the optimizer's eager state up to date with the arrays, so that
        ``predict``, saving, a callback or an eager ``step()`` see what the array steps made."""
        opt = self.optimizer
        if self._steps != opt.steps:
            raise RuntimeError(f"this ArrayState holds the parameters after step {self._steps}, but the optimizer "
                               f"has made {opt.steps} steps; writing it back would undo the later ones. "
                               f"Call opt.array_state() for a fresh one")
        for v, x in zip(opt.params, self.p.tolist()):
            v.data = x
        arrays = opt._on_arrays()
        for name, values in self.slots.items():     # in the form opt's eager steps use
            opt._state[name] = values.copy() if arrays else values.tolist()
        if opt._unwritten is self:
            opt._unwritten = None

    def __repr__(self) -> str:
        return f"ArrayState({len(self.p)} parameters, {type(self.optimizer).__name__}, steps={self._steps})"


class SGD(Optimizer):
    """Stochastic gradient descent, with optional momentum and weight decay (``torch.optim.SGD``).

    Per parameter ``p`` with gradient ``g`` and learning rate ``lr``::

        d = g + weight_decay * p
        buf = d  (first step),  buf = momentum * buf + (1 - dampening) * d  (later)   # if momentum > 0
        d = d + momentum * buf  (nesterov),  else  d = buf                            # if momentum > 0
        p = p - lr * d

    >>> from chainrule import Value
    >>> w = Value(1.0); opt = SGD([w], lr=0.1, momentum=0.9)
    >>> for _ in range(2):
    ...     w.grad = 1.0; opt.step()
    >>> round(w.data, 10)       # 1 - 0.1*1 - 0.1*(0.9 + 1)
    0.71
    """

    _slots = ("momentum_buffer",)

    def __init__(self, params: Iterable[Value], lr: LearningRate = 0.01, momentum: float = 0.0,
                 weight_decay: float = 0.0, dampening: float = 0.0, nesterov: bool = False):
        super().__init__(params, lr)
        self.momentum = _check_number("momentum", momentum, 0.0, 1.0)
        self.weight_decay = _check_number("weight_decay", weight_decay)
        self.dampening = _check_number("dampening", dampening, 0.0, 1.0, high_open=False)
        if not isinstance(nesterov, bool):
            raise TypeError(f"nesterov must be True or False, got {type(nesterov).__name__}")
        if nesterov and (self.momentum == 0 or self.dampening != 0):
            raise ValueError("nesterov=True needs momentum > 0 and dampening = 0 (as in torch.optim.SGD)")
        self.nesterov = nesterov

    def _rule(self, m, lr, t):
        mu, wd, dampening, nesterov = self.momentum, self.weight_decay, self.dampening, self.nesterov

        def update(p, g, buf):
            d = g + wd * p if wd else g
            if mu:
                if t == 1:
                    buf = d
                else:
                    buf *= mu
                    buf += (1 - dampening) * d
                d = d + mu * buf if nesterov else buf
            p -= lr * d
            return p, buf
        return update


class Adam(Optimizer):
    """Adam (``torch.optim.Adam``): steps scaled by running averages of the gradient and its square.

    Per parameter, at step ``t = 1, 2, ...`` with ``g = grad + weight_decay * p``::

        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    >>> from chainrule import Value
    >>> w = Value(1.0); opt = Adam([w], lr=0.1)
    >>> w.grad = 123.0; opt.step(); round(w.data, 6)   # the first step moves by lr, whatever the gradient's size
    0.9
    """

    _decoupled = False
    _slots = ("exp_avg", "exp_avg_sq")

    def __init__(self, params: Iterable[Value], lr: LearningRate = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, lr)
        try:
            beta1, beta2 = betas
        except (TypeError, ValueError):
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}") from None
        self.betas = (_check_number("betas[0]", beta1, 0.0, 1.0), _check_number("betas[1]", beta2, 0.0, 1.0))
        self.eps = _check_number("eps", eps)
        self.weight_decay = _check_number("weight_decay", weight_decay)

    def _rule(self, m, lr, t):
        # The same operations in the same order as PyTorch's single-tensor Adam, so that float
        # rounding agrees too. The bias corrections depend on the step only: computed once per step.
        (beta1, beta2), eps, wd, decoupled = self.betas, self.eps, self.weight_decay, self._decoupled
        step_size = lr / (1 - beta1 ** t)
        bias_correction2_sqrt = math.sqrt(1 - beta2 ** t)

        def update(p, g, exp_avg, exp_avg_sq):
            if decoupled:
                p *= 1 - lr * wd
            elif wd:
                g = g + wd * p
            exp_avg += (g - exp_avg) * (1 - beta1)
            exp_avg_sq *= beta2
            exp_avg_sq += (1 - beta2) * g * g
            denom = m.sqrt(exp_avg_sq) / bias_correction2_sqrt + eps
            p -= step_size * m.ieee_div(exp_avg, denom)     # 0 / 0 is nan (eps=0), as in torch
            return p, exp_avg, exp_avg_sq
        return update


class AdamW(Adam):
    """Adam with decoupled weight decay (``torch.optim.AdamW``): ``p = p * (1 - lr * weight_decay)``
    before the Adam step, instead of adding ``weight_decay * p`` to the gradient.

    >>> from chainrule import Value
    >>> w = Value(1.0); opt = AdamW([w], lr=0.1, weight_decay=0.5)
    >>> w.grad = 0.0; opt.step(); w.data     # zero gradient: only the decay acts
    0.95
    """

    _decoupled = True

    def __init__(self, params: Iterable[Value], lr: LearningRate = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


# Names the training loop and the command line accept (``--optimizer sgd``).
OPTIMIZERS: dict[str, type[Optimizer]] = {"adam": Adam, "adamw": AdamW, "sgd": SGD}
