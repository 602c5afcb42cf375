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
"""

from __future__ import annotations

import math
import numbers
from typing import Callable, Iterable, Union

from .engine import Value

__all__ = ["Adam", "AdamW", "OPTIMIZERS", "Optimizer", "SGD"]

LearningRate = Union[float, Callable[[int], float]]


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
    """What every optimizer shares: the parameter list, the learning rate (schedule), step counting.

    ``.steps`` counts the ``step()`` calls made. ``.lr`` is the learning rate the last ``step()``
    used (before the first step: the rate the first step will use), the number to log after a step.
    Assigning ``opt.lr = 0.1`` (or a new schedule function) changes the rate of later steps.
    """

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

    def step(self) -> None:
        """Update every parameter's ``.data`` from its ``.grad``, with this step's learning rate."""
        lr = self._rate(self.steps)
        self._update(lr)
        self.steps += 1
        self._last_lr = lr

    def _update(self, lr: float) -> None:
        raise NotImplementedError

    def zero_grad(self) -> None:
        """Set every parameter's ``.grad`` to 0 (before each ``backward()``)."""
        for p in self.params:
            p.grad = 0.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.params)} parameters, lr={self.lr:g}, steps={self.steps})"


class SGD(Optimizer):
    """Stochastic gradient descent, with optional momentum and weight decay (``torch.optim.SGD``).

    Per parameter ``p`` with gradient ``g`` and learning rate ``lr``::

        d = g + weight_decay * p
        buf = d  (first step),  buf = momentum * buf + d  (later steps)    # only if momentum > 0
        p = p - lr * buf  (or  p - lr * d  without momentum)

    >>> from chainrule import Value
    >>> w = Value(1.0); opt = SGD([w], lr=0.1, momentum=0.9)
    >>> for _ in range(2):
    ...     w.grad = 1.0; opt.step()
    >>> round(w.data, 10)       # 1 - 0.1*1 - 0.1*(0.9 + 1)
    0.71
    """

    def __init__(self, params: Iterable[Value], lr: LearningRate = 0.01, momentum: float = 0.0,
                 weight_decay: float = 0.0):
        super().__init__(params, lr)
        self.momentum = _check_number("momentum", momentum, 0.0, 1.0)
        self.weight_decay = _check_number("weight_decay", weight_decay)
        self._buf: list[float] | None = None

    def _update(self, lr: float) -> None:
        wd, mu = self.weight_decay, self.momentum
        if mu == 0:
            for p in self.params:
                d = p.grad + wd * p.data if wd else p.grad
                p.data = p.data - lr * d
            return
        first = self._buf is None
        if first:
            self._buf = [0.0] * len(self.params)
        buf = self._buf
        for i, p in enumerate(self.params):
            d = p.grad + wd * p.data if wd else p.grad
            buf[i] = d if first else mu * buf[i] + d
            p.data = p.data - lr * buf[i]


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
        n = len(self.params)
        self._m = [0.0] * n
        self._v = [0.0] * n

    def _update(self, lr: float) -> None:
        beta1, beta2 = self.betas
        wd, eps = self.weight_decay, self.eps
        t = self.steps + 1
        # The same operations in the same order as PyTorch's single-tensor Adam, so that float
        # rounding agrees too.
        step_size = lr / (1 - beta1 ** t)
        bias_correction2_sqrt = math.sqrt(1 - beta2 ** t)
        m, v = self._m, self._v
        for i, p in enumerate(self.params):
            g = p.grad
            if self._decoupled:
                p.data = p.data * (1 - lr * wd)
            elif wd:
                g = g + wd * p.data
            m[i] = m[i] + (g - m[i]) * (1 - beta1)
            v[i] = v[i] * beta2 + (1 - beta2) * g * g
            denom = math.sqrt(v[i]) / bias_correction2_sqrt + eps
            p.data = p.data - step_size * (m[i] / denom)


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
