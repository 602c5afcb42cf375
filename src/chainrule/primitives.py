"""The table of primitives: each op's forward computation and local derivative, side by side.

Every rule is written once against a math namespace ``m`` (:mod:`chainrule.mathspace`), so the
eager engine runs it on floats and the compiled replay runs the same text on numpy arrays.
Adding an op is adding one row, with :func:`register` (``chainrule.primitive`` is the public door).

A row's ``backward(m, g, out, *inputs)`` returns one term per input: the engine adds each term
into that input's ``.grad`` (the chain rule: d loss/d input += d out/d input * g). The rules
follow PyTorch's derivative formulas, including where they select rather than multiply, so a
path that is switched off passes exactly 0 even if ``nan`` arrives there (see docs/numerics.md).

>>> list(PRIMITIVES)[:11]
['+', '*', '/', '**', '**k', 'exp', 'log', 'sqrt', 'tanh', 'sigmoid', 'relu']
>>> from chainrule.mathspace import SCALAR
>>> PRIMITIVES["*"].backward(SCALAR, 1.0, 6.0, 2.0, 3.0)     # d(a*b): b for a, a for b
(3.0, 2.0)
"""

from __future__ import annotations

import inspect
import math
import numbers
from typing import Callable

from .mathspace import SCALAR

__all__ = ["BUILTIN", "INTERNAL", "PRIMITIVES", "Primitive", "VALUE", "register"]


class Primitive:
    """One op: ``forward(m, *inputs) -> out`` and ``backward(m, g, out, *inputs) -> local grads``.

    ``n_inputs`` counts the Values the op reads. A built-in op may also take a constant parameter
    (``x ** 2``), which both functions receive as their last argument ``k``.
    ``kind`` tells the engine how a node stores its inputs: 1 or 2 Values, 3 for one Value and a
    constant, 0 for any other count (kept as a tuple).
    """

    __slots__ = ("name", "forward", "backward", "n_inputs", "kind", "symbol")

    def __init__(self, name: str, forward: Callable, backward: Callable, n_inputs: int, constant: str = ""):
        self.name, self.forward, self.backward, self.n_inputs = name, forward, backward, n_inputs
        self.kind = 3 if constant else n_inputs if n_inputs in (1, 2) else 0
        self.symbol = constant      # how a node shows its constant: "**" makes x ** 2 read "**2"

    def __repr__(self) -> str:
        return f"Primitive({self.name!r}, {self.n_inputs} input{'s' * (self.n_inputs != 1)})"


def _row(name, n_inputs, forward, backward, constant="") -> tuple[str, Primitive]:
    return name, Primitive(name, forward, backward, n_inputs, constant)


# Three derivatives serve two rows each: the op, and its IEEE twin below that never raises.
def _div_backward(m, g, out, a, b):
    return m.ieee_div(g, b), -g * m.ieee_div(out, b)


def _pow_backward(m, g, out, a, b):
    # d(a**b)/da = b * a**(b-1), and 0 where b == 0; d(a**b)/db = a**b * log(a), and 0 where a == 0
    # and b >= 0 (the limit). A negative base has no real log: nan, as in PyTorch.
    return (m.where(m.eq(b, 0), 0.0, g * (b * m.ieee_pow(a, b - 1))),
            g * m.where(m.both(m.eq(a, 0), m.ge(b, 0)), 0.0, out * m.ieee_log(a)))


def _powk_backward(m, g, out, a, k):
    return (m.where(m.eq(k, 0), 0.0, g * (k * m.ieee_pow(a, k - 1))),)


def _log_backward(m, g, out, a):
    return (m.ieee_div(g, a),)


PRIMITIVES: dict[str, Primitive] = dict([
    #     op      inputs forward                      local derivative, times g
    _row("+",       2, lambda m, a, b: a + b,       lambda m, g, out, a, b: (g, g)),
    _row("*",       2, lambda m, a, b: a * b,       lambda m, g, out, a, b: (g * b, g * a)),
    _row("/",       2, lambda m, a, b: m.div(a, b), _div_backward),
    _row("**",      2, lambda m, a, b: m.pow(a, b), _pow_backward),
    _row("**k",     1, lambda m, a, k: m.pow(a, k), _powk_backward, constant="**"),
    _row("exp",     1, lambda m, a: m.exp(a),       lambda m, g, out, a: (g * out,)),
    _row("log",     1, lambda m, a: m.log(a),       _log_backward),
    _row("sqrt",    1, lambda m, a: m.sqrt(a),      lambda m, g, out, a: (m.ieee_div(g, 2 * out),)),  # inf at 0
    _row("tanh",    1, lambda m, a: m.tanh(a),      lambda m, g, out, a: (g * (1 - out * out),)),
    _row("sigmoid", 1, lambda m, a: m.sigmoid(a),   lambda m, g, out, a: (g * (1 - out) * out,)),
    # relu selects: the gradient passes where a > 0 and is exactly 0 elsewhere, even if g is nan.
    _row("relu",    1, lambda m, a: m.relu(a),      lambda m, g, out, a: (m.where(m.le(a, 0), 0.0, g),)),

    # Rows that only a differentiable backward pass builds (``grad(..., create_graph=True)``): the
    # derivative helpers of the namespace as ops on Values, so that the graph of a backward pass can
    # itself be backpropagated, and replayed on arrays. The IEEE twins share their op's derivative.
    _row("ieee_div", 2, lambda m, a, b: m.ieee_div(a, b), _div_backward),
    _row("ieee_pow", 2, lambda m, a, b: m.ieee_pow(a, b), _pow_backward),
    _row("ieee_**k", 1, lambda m, a, k: m.ieee_pow(a, k), _powk_backward, constant="**"),
    _row("ieee_log", 1, lambda m, a: m.ieee_log(a),       _log_backward),
    # select(c, x, y) is x where the indicator c is 1, else y; c itself has slope 0.
    _row("select",  3, lambda m, c, x, y: m.where(c, x, y),
         lambda m, g, out, c, x, y: (0.0, m.where(c, g, 0.0), m.where(c, 0.0, g))),
    # Indicators (1.0 or 0.0) of a comparison with a constant; their slope is 0.
    _row("==",      1, lambda m, a, k: m.where(m.eq(a, k), 1.0, 0.0), lambda m, g, out, a, k: (0.0,), constant="=="),
    _row("<=",      1, lambda m, a, k: m.where(m.le(a, k), 1.0, 0.0), lambda m, g, out, a, k: (0.0,), constant="<="),
    _row(">=",      1, lambda m, a, k: m.where(m.ge(a, k), 1.0, 0.0), lambda m, g, out, a, k: (0.0,), constant=">="),
])

BUILTIN = frozenset(PRIMITIVES)     # the rows chainrule ships; register() adds more
INTERNAL = frozenset({"ieee_div", "ieee_pow", "ieee_**k", "ieee_log", "select", "==", "<=", ">="})


# --- the same rules on Values ---------------------------------------------------------------------

class _ValueMath:
    """The namespace on Values: a rule's backward run with it *builds a graph* of the backward pass,
    which can be backpropagated again (second derivatives, and any order). Plain numbers pass
    through as plain numbers; a Value goes through the rows above (``x._apply(row, ...)``)."""

    @staticmethod
    def _is_number(x) -> bool:
        return isinstance(x, (int, float))

    def exp(self, x):
        return x.exp()

    def log(self, x):
        return x.log()

    def sqrt(self, x):
        return x.sqrt()

    def tanh(self, x):
        return x.tanh()

    def sigmoid(self, x):
        return x.sigmoid()

    def relu(self, x):
        return x.relu()

    def pow(self, x, y):
        return x ** y

    def div(self, x, y):
        return x / y

    def _op(self, name, scalar, *args):
        if all(map(self._is_number, args)):
            return scalar(*args)
        value = next(a for a in args if not self._is_number(a))
        return value._apply(PRIMITIVES[name], *args)

    def ieee_div(self, x, y):
        return self._op("ieee_div", SCALAR.ieee_div, x, y)

    def ieee_pow(self, x, y):
        if self._is_number(y) and not self._is_number(x):
            # A constant exponent stays a constant, so the next order's test ``k == 0`` is decided
            # in Python (a Value exponent would keep an inf branch that 0 * inf turns into nan).
            return x._apply(PRIMITIVES["ieee_**k"], x, y)
        return self._op("ieee_pow", SCALAR.ieee_pow, x, y)

    def ieee_log(self, x):
        return self._op("ieee_log", SCALAR.ieee_log, x)

    def _compare(self, name, scalar, x, c):
        return scalar(x, c) if self._is_number(x) else x._apply(PRIMITIVES[name], x, float(c))

    def eq(self, x, c):
        return self._compare("==", SCALAR.eq, x, c)

    def le(self, x, c):
        return self._compare("<=", SCALAR.le, x, c)

    def ge(self, x, c):
        return self._compare(">=", SCALAR.ge, x, c)

    def both(self, p, q):
        if self._is_number(p) and self._is_number(q):
            return SCALAR.both(p, q)
        return p * q                # indicators: 1 only where both are 1

    def where(self, cond, x, y):
        if self._is_number(cond):
            return x if cond else y
        return cond._apply(PRIMITIVES["select"], cond, x, y)


VALUE = _ValueMath()


# --- adding a row ---------------------------------------------------------------------------------

def _positional_count(fn: Callable) -> int | None:
    """How many positional parameters ``fn`` takes (None if it takes ``*args``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return None
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


_PROBES = (0.5, 1.5, -0.7, 2.5)


def register(name: str, forward: Callable, backward: Callable, n_inputs: int | None = None,
             replace: bool = False) -> Primitive:
    """Add a row to the table and return it. See ``chainrule.primitive`` for the public door.

    Checks what can be checked now, so a bad rule fails here with its name rather than deep inside
    a backward pass: the name is new, both are functions, their argument counts agree, and on a
    few probe inputs ``forward`` gives a real number and ``backward`` one term per input.
    ``replace=True`` redefines an op added before (never a built-in one); nodes made earlier keep
    the rule they were made with.
    """
    if not isinstance(name, str) or not name or not name.isprintable() or any(c.isspace() for c in name):
        raise ValueError(f"a primitive needs a short printable name without spaces, got {name!r}")
    if name in PRIMITIVES and name in BUILTIN:
        raise ValueError(f"primitive {name!r} exists already and is built in; choose another name (the "
                         f"table has " + ", ".join(PRIMITIVES) + ")")
    if name in PRIMITIVES and not replace:
        raise ValueError(f"primitive {name!r} exists already; choose another name, or pass replace=True to "
                         f"redefine it (as when a notebook cell runs again)")
    for what, fn in (("forward", forward), ("backward", backward)):
        if not callable(fn):
            raise TypeError(f"primitive {name!r}: {what} must be a function, got {type(fn).__name__}")
    counted = _positional_count(forward)
    if n_inputs is None:
        if counted is None or counted < 2:
            raise TypeError(f"primitive {name!r}: forward must be written as forward(m, a, ...) with one "
                            f"argument per input after the math namespace m (or pass n_inputs=)")
        n_inputs = counted - 1
    if isinstance(n_inputs, bool) or not isinstance(n_inputs, numbers.Integral) or n_inputs < 1:
        raise ValueError(f"primitive {name!r}: n_inputs must be a whole number >= 1, got {n_inputs!r}")
    n_inputs = int(n_inputs)
    if counted is not None and counted - 1 != n_inputs:
        raise TypeError(f"primitive {name!r}: n_inputs={n_inputs}, but forward takes {counted - 1} input(s) "
                        f"after m")
    back = _positional_count(backward)
    if back is not None and back != n_inputs + 3:
        raise TypeError(f"primitive {name!r}: backward must be backward(m, g, out, "
                        + ", ".join(f"x{i}" for i in range(n_inputs))
                        + f") ({n_inputs + 3} arguments), it takes {back}")
    _probe(name, forward, backward, n_inputs)
    row = Primitive(name, *_checked(name, forward, backward, n_inputs), n_inputs)
    PRIMITIVES[name] = row
    return row


def _real(name: str, what: str, x):
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        hint = " (a negative number to a fractional power is complex: use m.pow, which says so)" \
            if isinstance(x, complex) else ""
        raise TypeError(f"primitive {name!r}: {what} gave {type(x).__name__} {x!r}, not a real number{hint}")
    return float(x)


def _terms(name: str, terms, n_inputs: int, real: bool = True):
    """A backward's result, checked: one term per input (and each a real number, on floats)."""
    if not isinstance(terms, (tuple, list)) or len(terms) != n_inputs:
        got = f"{len(terms)} terms" if isinstance(terms, (tuple, list)) else f"a {type(terms).__name__}"
        raise ValueError(f"primitive {name!r}: backward must return a tuple of {n_inputs} gradient "
                         f"term{'s' * (n_inputs != 1)} (one per input), it returned {got}")
    return tuple(_real(name, "backward", t) for t in terms) if real else terms


def _checked(name: str, forward: Callable, backward: Callable, n_inputs: int) -> tuple[Callable, Callable]:
    """A user's rule, checked on every eager call: a real number out, one real term per input."""
    def checked_forward(m, *args):
        out = forward(m, *args)
        return _real(name, "forward", out) if m is SCALAR else out

    def checked_backward(m, g, out, *args):
        return _terms(name, backward(m, g, out, *args), n_inputs, real=m is SCALAR)

    return checked_forward, checked_backward


def _probe(name: str, forward: Callable, backward: Callable, n_inputs: int) -> None:
    # An op may be undefined at some probe points (log at -0.7): try a few, check the first that works.
    for x in _PROBES:
        inputs = [x] * n_inputs
        try:
            out = forward(SCALAR, *inputs)
        except (ArithmeticError, ValueError):
            continue
        if isinstance(out, bool) or not isinstance(out, numbers.Real):
            raise TypeError(f"primitive {name!r}: forward must return a number, it returned "
                            f"{type(out).__name__} for inputs {inputs}")
        try:
            terms = backward(SCALAR, 1.0, float(out), *inputs)
        except (ArithmeticError, ValueError):
            continue
        _terms(name, terms, n_inputs)
        return


def constant_display(k: float) -> str:
    """How an exponent shows in an op name: ``**2``, ``**-1``, ``**0.5``."""
    return f"{int(k)}" if math.isfinite(k) and float(k).is_integer() else f"{k!r}"
