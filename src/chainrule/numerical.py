"""Checking gradients: does ``backward()`` agree with the slope you can measure?

The lecture's first chapter measures a derivative by nudging the input, ``(f(x + h) - f(x)) / h``.
That one-sided difference is off by about ``h * f''(x) / 2``; nudging both ways,
``(f(x + h) - f(x - h)) / (2 * h)``, cancels that term and is accurate to about ``h**2``, which is
what ``numerical_derivative`` and ``gradcheck`` use.

>>> from chainrule.numerical import gradcheck
>>> report = gradcheck(lambda a, b: (a * b + b.exp()).tanh(), [0.3, -0.7])
>>> bool(report), [row.name for row in report.rows]
(True, ['a', 'b'])
"""

from __future__ import annotations

import inspect
import numbers
from typing import Callable, NamedTuple, Sequence

from .engine import Value, enable_grad, grad, no_grad

__all__ = ["GradcheckReport", "GradcheckRow", "gradcheck", "numerical_derivative"]


def numerical_derivative(f: Callable[[float], float], x: float, h: float = 1e-6) -> float:
    """The slope of ``f`` at ``x`` by central differences: ``(f(x + h) - f(x - h)) / (2 * h)``.

    ``f`` takes and returns plain numbers (a function returning a Value works too).

    >>> def f(x):
    ...     return 3 * x**2 - 4 * x + 5
    >>> round(numerical_derivative(f, 3.0), 6)
    14.0
    """
    return (float(f(x + h)) - float(f(x - h))) / (2 * h)


class GradcheckRow(NamedTuple):
    """One input's verdict: backward's gradient next to the measured one."""
    name: str
    analytic: float
    numeric: float
    abs_error: float
    ok: bool


class GradcheckReport:
    """The result of :func:`gradcheck`: truthy iff every input's gradients agree.

    ``rows`` holds one :class:`GradcheckRow` per input; ``str(report)`` is an aligned table that
    ends with a line naming each input that failed and by how much.
    """

    def __init__(self, rows: list[GradcheckRow], rtol: float, atol: float):
        self.rows = rows
        self.rtol = rtol
        self.atol = atol

    def __bool__(self) -> bool:
        return all(row.ok for row in self.rows)

    @property
    def failures(self) -> list[GradcheckRow]:
        """The rows whose gradients disagree."""
        return [row for row in self.rows if not row.ok]

    @property
    def message(self) -> str:
        """One line: ``gradcheck passed ...`` or which inputs disagree and by how much."""
        if self:
            return f"gradcheck passed: {len(self.rows)} input(s) agree within rtol={self.rtol:g}, atol={self.atol:g}"
        parts = [f"{row.name}: backward gives {row.analytic:.8g}, finite differences give {row.numeric:.8g} "
                 f"(off by {row.abs_error:.3g}, allowed {self.atol + self.rtol * abs(row.numeric):.3g})"
                 for row in self.failures]
        return "gradcheck FAILED for " + "; ".join(parts)

    def __str__(self) -> str:
        header = ("input", "analytic", "numeric", "abs error", "ok")
        cells = [(row.name, f"{row.analytic:.8g}", f"{row.numeric:.8g}", f"{row.abs_error:.2e}",
                  "yes" if row.ok else "NO") for row in self.rows]
        widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header))]
        lines = ["  ".join(text.ljust(w) if i == 0 else text.rjust(w)
                           for i, (text, w) in enumerate(zip(line, widths))).rstrip()
                 for line in [header, *cells]]
        return "\n".join(lines + [self.message])

    def __repr__(self) -> str:
        return f"<GradcheckReport {'ok' if self else 'FAILED'}: {len(self.rows)} inputs>"


def _input_names(f: Callable, n: int) -> list[str]:
    """The names of ``f``'s positional parameters, or ``x[i]`` where they cannot be read."""
    try:
        params = list(inspect.signature(f).parameters.values())
    except (TypeError, ValueError):     # builtins and some callables have no readable signature
        params = []
    positional = [p.name for p in params
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][:n]
    if len(positional) == n:
        return positional
    return [f"x[{i}]" for i in range(n)]


def _as_float(x, i: int) -> float:
    if isinstance(x, Value):
        return x.data
    if isinstance(x, numbers.Real) and not isinstance(x, bool):
        return float(x)
    raise TypeError(f"gradcheck inputs must be numbers or Values; input {i} is {type(x).__name__} {x!r}")


def _check_derivatives(f, point, names, eps, rtol, atol, order) -> GradcheckReport:
    """gradcheck of each first derivative of ``f`` (as a function of the same inputs), to ``order - 1``."""
    rows = []
    for i, name in enumerate(names):
        def derivative(*xs, i=i):
            with enable_grad():       # gradcheck nudges f under no_grad; this f needs its graph
                return grad(f(*xs), list(xs), create_graph=True)[i]
        inner = gradcheck(derivative, [Value(x, label=n) for x, n in zip(point, names)], eps, rtol, atol,
                          order - 1)
        rows += [row._replace(name=f"d({name})/d({row.name})") for row in inner.rows]
    return GradcheckReport(rows, rtol, atol)


def gradcheck(f: Callable[..., Value], inputs: Sequence, eps: float = 1e-6, rtol: float = 1e-5,
              atol: float = 1e-7, order: int = 1) -> GradcheckReport:
    """Compare ``backward()``'s gradient of ``f`` with central finite differences, input by input.

    ``f`` takes one Value per entry of ``inputs`` (numbers, or Values whose ``.data`` is used) and
    returns a Value. An input passes when ``|analytic - numeric| <= atol + rtol * |numeric|``.
    Inputs are named by their label (for labelled Values) or after ``f``'s parameters
    (``x[0]``, ``x[1]``, ... for ``*args``). Stay away
    from kinks (``relu`` or ``abs`` at 0), where the two honestly differ.

    ``order=2`` checks second derivatives instead: each first derivative, computed by
    ``chainrule.grad(..., create_graph=True)``, is itself checked against finite differences (rows
    ``d(a)/d(b)``: the derivative by b of the derivative by a). Higher orders work the same way.

    >>> report = gradcheck(lambda a, b: a * b + a.tanh(), [2.0, -3.0])
    >>> bool(report)
    True
    >>> print(report)                                # doctest: +ELLIPSIS
    input    analytic     numeric  abs error   ok
    a      -2.9293492  -2.9293492   ...  yes
    b               2           2   ...  yes
    gradcheck passed: 2 input(s) agree within rtol=1e-05, atol=1e-07
    >>> bad = gradcheck(lambda x: Value(x.data ** 2, (x,), "exp"), [3.0])   # a wrong rule
    >>> bool(bad), bad.message
    (False, 'gradcheck FAILED for x: backward gives 9, finite differences give 6 (off by 3, allowed 6.01e-05)')
    >>> second = gradcheck(lambda a, b: (a * b).tanh() * a, [0.3, -0.7], order=2)
    >>> bool(second), [row.name for row in second.rows]
    (True, ['d(a)/d(a)', 'd(a)/d(b)', 'd(b)/d(a)', 'd(b)/d(b)'])
    """
    point = [_as_float(x, i) for i, x in enumerate(inputs)]
    names = [x.label if isinstance(x, Value) and x.label else name
             for x, name in zip(inputs, _input_names(f, len(point)))]
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ValueError(f"order must be a whole number >= 1, got {order!r}")
    if order > 1:
        return _check_derivatives(f, point, names, eps, rtol, atol, order)

    leaves = [Value(x, label=name) for x, name in zip(point, names)]
    out = f(*leaves)
    if not isinstance(out, Value):
        raise TypeError(f"gradcheck needs f to return a Value, got {type(out).__name__} {out!r}")
    out.backward()

    def at(i: int, x: float) -> float:
        args = [Value(x if j == i else p) for j, p in enumerate(point)]
        with no_grad():
            return f(*args).data

    rows = []
    for i, (name, leaf) in enumerate(zip(names, leaves)):
        numeric = (at(i, point[i] + eps) - at(i, point[i] - eps)) / (2 * eps)
        analytic = leaf.grad
        error = abs(analytic - numeric)
        ok = analytic == numeric or error <= atol + rtol * abs(numeric)
        rows.append(GradcheckRow(name, analytic, numeric, error, ok))
    return GradcheckReport(rows, rtol, atol)
