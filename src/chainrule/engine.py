"""The engine: a scalar ``Value`` that remembers how it was made, and backpropagation.

Read this file top to bottom, like a chapter:

1. Two *math namespaces*, ``SCALAR`` (Python floats) and ``ARRAY`` (numpy arrays), offering the same
   few functions under the same names. Every derivative rule below is written once against such a
   namespace ``m``, so the eager engine runs it on floats and the compiled replay
   (:mod:`chainrule.replay`) runs the very same rule on whole arrays.
2. The table of primitives, ``PRIMITIVES``: each row is one op with its forward computation and its
   local derivative side by side. Adding an op is adding one row.
3. ``Value``: arithmetic builds the graph, ``backward()`` walks it in reverse topological order and
   applies the chain rule. Everything that is not a primitive (``-``, ``/``, ``sqrt``, ``abs``) is a
   one-line composition of primitives.

The rule for gradients, which ``backward()`` documents too: a pass sets the root's gradient to 1,
resets every *interior* node it reaches to 0 first, and adds (``+=``) into *leaves*. So calling
``backward()`` twice doubles leaf gradients (exactly, like PyTorch), while interior nodes show the
latest pass. Call ``zero_grad()`` (or set ``p.grad = 0.0``) between training steps.
"""

from __future__ import annotations

import math
import numbers
from contextlib import contextmanager
from typing import Callable, Iterator, NamedTuple

__all__ = ["ARRAY", "PRIMITIVES", "SCALAR", "Primitive", "Value", "is_grad_enabled", "no_grad",
           "topological_order"]


# --- 1. Math namespaces ---------------------------------------------------------------------------
# Python's float math fails in unhelpful ways (``math range error``, a complex number from
# ``(-8) ** (1/3)``). The scalar namespace turns each failure into an error that names the op and
# its input, which is what a learner can act on.

def _exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        raise OverflowError(f"exp({x!r}) overflows a float (the largest finite exp input is about 709.78)") from None


def _log(x: float) -> float:
    if x <= 0:
        raise ValueError(f"log({x!r}) is undefined: log needs a positive number")
    return math.log(x)


def _pow(x: float, y: float) -> float:
    try:
        out = x ** y
    except ZeroDivisionError:
        raise ZeroDivisionError(f"pow: {x!r} ** {y!r} divides by zero") from None
    except OverflowError:
        raise OverflowError(f"pow: {x!r} ** {y!r} overflows a float") from None
    if isinstance(out, complex):
        raise ValueError(f"pow: {x!r} ** {y!r} is not a real number (negative base, fractional exponent)")
    return out


def _sigmoid(x: float) -> float:
    # Two branches so that exp only ever sees a non-positive number: exact and finite for every x.
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _out_log_base(out: float, base: float) -> float:
    # d(a**b)/db = a**b * log(a). Where a**b is 0 the term is 0 (PyTorch's convention); a negative
    # base has no real logarithm, so the exponent's gradient is nan there, as in PyTorch.
    if out == 0:
        return 0.0
    return out * math.log(base) if base > 0 else math.nan


class _ScalarMath:
    """Math on Python floats (the eager engine)."""
    exp = staticmethod(_exp)
    log = staticmethod(_log)
    pow = staticmethod(_pow)
    tanh = staticmethod(math.tanh)
    sigmoid = staticmethod(_sigmoid)
    out_log_base = staticmethod(_out_log_base)

    @staticmethod
    def relu(x: float) -> float:
        return x if x > 0 else 0.0


class _ArrayMath:
    """The same functions on numpy arrays (the compiled replay). numpy is imported on first use,
    so the eager engine needs nothing beyond the standard library."""

    def __getattr__(self, name: str):
        import numpy as np

        def sigmoid(x):
            e = np.exp(-np.abs(x))
            return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))

        def out_log_base(out, base):
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.where(out == 0, 0.0, out * np.log(base))

        table = {"exp": np.exp, "log": np.log, "pow": np.power, "tanh": np.tanh, "sigmoid": sigmoid,
                 "relu": lambda x: np.maximum(x, 0.0), "out_log_base": out_log_base}
        if name not in table:
            raise AttributeError(name)
        for key, fn in table.items():
            setattr(self, key, fn)
        return table[name]


SCALAR = _ScalarMath()
ARRAY = _ArrayMath()


# --- 2. The table of primitives -------------------------------------------------------------------

class Primitive(NamedTuple):
    """One op: ``forward(m, *inputs) -> out`` and ``backward(m, g, out, *inputs) -> local grads``.

    ``g`` is the output's gradient; ``backward`` returns one term per input, and the engine adds
    each term into that input's ``.grad`` (the chain rule: d loss/d input += d out/d input * g).
    A primitive with a constant parameter (``x ** 2``) receives it as its last input, ``k``.
    """
    name: str
    forward: Callable
    backward: Callable


PRIMITIVES: dict[str, Primitive] = {p.name: p for p in [
    #          op         forward                            local derivative, times g
    Primitive("+",       lambda m, a, b: a + b,             lambda m, g, out, a, b: (g, g)),
    Primitive("*",       lambda m, a, b: a * b,             lambda m, g, out, a, b: (g * b, g * a)),
    Primitive("**",      lambda m, a, b: m.pow(a, b),       lambda m, g, out, a, b: (g * b * m.pow(a, b - 1),
                                                                                      g * m.out_log_base(out, a))),
    Primitive("**k",     lambda m, a, k: m.pow(a, k),       lambda m, g, out, a, k: (g * k * m.pow(a, k - 1),)),
    Primitive("exp",     lambda m, a: m.exp(a),             lambda m, g, out, a: (g * out,)),
    Primitive("log",     lambda m, a: m.log(a),             lambda m, g, out, a: (g / a,)),
    Primitive("tanh",    lambda m, a: m.tanh(a),            lambda m, g, out, a: (g * (1 - out * out),)),
    Primitive("sigmoid", lambda m, a: m.sigmoid(a),         lambda m, g, out, a: (g * out * (1 - out),)),
    Primitive("relu",    lambda m, a: m.relu(a),            lambda m, g, out, a: (g * (a > 0),)),
]}


# --- 3. Value -------------------------------------------------------------------------------------

class _GradMode:
    enabled = True


@contextmanager
def no_grad() -> Iterator[None]:
    """Compute data only, recording no graph: for evaluation, plots and parameter updates.

    >>> from chainrule import Value, no_grad
    >>> x = Value(3.0)
    >>> with no_grad():
    ...     y = x * x
    >>> y.data, y._prev
    (9.0, ())
    """
    previous = _GradMode.enabled
    _GradMode.enabled = False
    try:
        yield
    finally:
        _GradMode.enabled = previous


def is_grad_enabled() -> bool:
    """True unless inside ``no_grad()``."""
    return _GradMode.enabled


def _check_number(data, who: str = "Value()") -> float:
    if type(data) is float:
        return data
    if isinstance(data, numbers.Real) and not isinstance(data, bool):
        return float(data)
    shown = repr(data)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    hint = " (use .data to get a Value's number)" if isinstance(data, Value) else ""
    raise TypeError(f"{who} needs a real number, got {type(data).__name__} {shown}{hint}")


class Value:
    """One number in a computation graph, with the gradient backward() fills in.

    >>> x1 = Value(2.0, label="x1"); w1 = Value(-3.0, label="w1")
    >>> b = Value(6.8813735870195432, label="b")
    >>> n = x1*w1 + b; n.label = "n"
    >>> o = n.tanh(); o.backward()
    >>> round(o.data, 4), round(n.grad, 4), round(x1.grad, 4), round(w1.grad, 4)
    (0.7071, 0.5, -1.5, 1.0)
    >>> o._op, [v.label for v in n._prev]
    ('tanh', ['', 'b'])
    """

    # No per-node closures and no cycles: a node holds its inputs and the name of its rule, so
    # reference counting frees a graph the moment it is dropped (micrograd's closures leave that
    # to Python's slow cycle collector).
    __slots__ = ("data", "grad", "label", "_prev", "_rule", "_arg")

    def __init__(self, data, _children=(), _op: str = "", label: str = ""):
        self.data = _check_number(data)
        self.grad = 0.0
        self.label = label
        self._prev = tuple(_children)
        # A hand-made node (``Value(5.0, (a, b), "+")``) gets the matching primitive's rule;
        # an op name with no rule is kept for display and makes backward() fail loudly.
        self._rule = _op
        self._arg = None

    @classmethod
    def _result(cls, rule: str, data: float, children: tuple, arg=None) -> "Value":
        # Results of ops skip __init__'s checks: their data is already a float we computed.
        out = cls.__new__(cls)
        out.data = data
        out.grad = 0.0
        out.label = ""
        if _GradMode.enabled:
            out._prev, out._rule, out._arg = children, rule, arg
        else:
            out._prev, out._rule, out._arg = (), "", None
        return out

    @property
    def _op(self) -> str:
        """The op that produced this node as the lecture writes it: ``+``, ``*``, ``**2``, ``tanh``."""
        if self._rule == "**k":
            k = self._arg
            return f"**{int(k) if float(k).is_integer() else k}"
        return self._rule

    def __repr__(self) -> str:
        label = f"label={self.label!r}, " if self.label else ""
        return f"Value({label}data={self.data:.4f}, grad={self.grad:.4f})"

    def __float__(self) -> float:
        return self.data

    # The primitives. Each wraps a plain number into a constant Value so it shows in the graph.

    def _apply(self, rule: str, other: "Value | None" = None) -> "Value":
        forward = PRIMITIVES[rule].forward
        if other is None:
            return Value._result(rule, forward(SCALAR, self.data), (self,))
        return Value._result(rule, forward(SCALAR, self.data, other.data), (self, other))

    def __add__(self, other):
        other = _wrap(other)
        return NotImplemented if other is None else self._apply("+", other)

    def __mul__(self, other):
        other = _wrap(other)
        return NotImplemented if other is None else self._apply("*", other)

    def __pow__(self, other):
        if isinstance(other, Value):
            return self._apply("**", other)
        if isinstance(other, numbers.Real) and not isinstance(other, bool):
            k = float(other)
            return Value._result("**k", _pow(self.data, k), (self,), k)
        return NotImplemented

    def exp(self) -> "Value":
        """e ** self. Raises OverflowError naming exp and the input past about 709.78."""
        return self._apply("exp")

    def log(self) -> "Value":
        """Natural logarithm. Raises ValueError naming log and the input for a non-positive number."""
        return self._apply("log")

    def tanh(self) -> "Value":
        """Hyperbolic tangent, exact and finite for every finite input."""
        return self._apply("tanh")

    def sigmoid(self) -> "Value":
        """1 / (1 + e ** -self), exact and finite for every finite input."""
        return self._apply("sigmoid")

    def relu(self) -> "Value":
        """max(self, 0); its gradient is 0 at 0, as in PyTorch."""
        return self._apply("relu")

    # Compositions: each is its comment, built from the primitives above.

    def __radd__(self, other):            # other + self
        return self + other

    def __rmul__(self, other):            # other * self
        return self * other

    def __neg__(self):                    # -self is self * -1
        return self * -1

    def __sub__(self, other):             # self - other is self + (-other)
        other = _wrap(other)
        return NotImplemented if other is None else self + (-other)

    def __rsub__(self, other):            # other - self is other + (-self)
        other = _wrap(other)
        return NotImplemented if other is None else other + (-self)

    def __truediv__(self, other):         # self / other is self * other ** -1
        other = _wrap(other)
        if other is None:
            return NotImplemented
        if other.data == 0:
            raise ZeroDivisionError(f"division by zero: {self!r} / {other!r}")
        return self * other ** -1

    def __rtruediv__(self, other):        # other / self is other * self ** -1
        other = _wrap(other)
        return NotImplemented if other is None else other / self

    def __rpow__(self, other):            # other ** self, with a Value exponent
        other = _wrap(other)
        return NotImplemented if other is None else other ** self

    def sqrt(self) -> "Value":            # sqrt(x) is x ** 0.5
        return self ** 0.5

    def __abs__(self) -> "Value":         # |x| is relu(x) + relu(-x)
        return self.relu() + (-self).relu()

    # Backpropagation.

    def _backward(self) -> None:
        """Apply this node's local chain-rule step: add its share of ``self.grad`` into each input.

        This is the step the lecture first calls by hand, node by node; ``backward()`` calls it for
        every node in reverse topological order.
        """
        if not self._prev:
            return
        rule = PRIMITIVES.get(self._rule)
        if rule is None:
            raise NotImplementedError(f"no derivative rule for op {self._rule!r}; the ops with rules are "
                                      + ", ".join(PRIMITIVES))
        inputs = [child.data for child in self._prev]
        if self._arg is not None:
            inputs.append(self._arg)
        terms = rule.backward(SCALAR, self.grad, self.data, *inputs)
        for child, term in zip(self._prev, terms):
            child.grad += term

    def backward(self, on_step: Callable[["Value"], None] | None = None) -> None:
        """Fill in ``.grad`` of every node this one depends on, by the chain rule.

        The walk is iterative, so graphs of any depth work. Gradients of leaves (inputs and
        parameters) accumulate across calls: calling ``backward()`` twice doubles them, so zero them
        between training steps (``model.zero_grad()``). Interior nodes are reset on every call and
        show the latest pass. ``on_step(node)``, if given, is called after each node's local step
        (that is how ``explain`` and the step-through view watch backward run).

        >>> a = Value(3.0); b = a * a
        >>> b.backward(); a.grad
        6.0
        >>> b.backward(); a.grad
        12.0
        """
        order = topological_order(self)
        for node in order:
            if node._prev:
                node.grad = 0.0
        self.grad += 1.0
        for node in reversed(order):
            node._backward()
            if on_step is not None:
                on_step(node)


def _wrap(x) -> Value | None:
    """A Value stays itself, a real number becomes a constant Value, anything else is None."""
    if isinstance(x, Value):
        return x
    if isinstance(x, numbers.Real) and not isinstance(x, bool):
        return Value(x)
    return None


def topological_order(root: Value) -> list[Value]:
    """Every node ``root`` depends on, each after all of its inputs (root last). No recursion.

    >>> a = Value(1.0, label="a"); b = Value(2.0, label="b"); c = a * b; c.label = "c"
    >>> [v.label for v in topological_order(c)]
    ['a', 'b', 'c']
    """
    order: list[Value] = []
    # Values hash by identity (Value defines no __eq__), so the set holds the nodes themselves:
    # twice as fast as a set of id()s, which needs a function call per lookup.
    visited: set[Value] = set()
    # A node is emitted when it is met the second time, after everything it depends on: a
    # depth-first post-order without recursion. Two flat stacks instead of (node, flag) tuples,
    # because millions of small tuples would keep Python's cycle collector busy.
    stack: list[Value] = [root]
    children_done: list[bool] = [False]
    while stack:
        node = stack.pop()
        if children_done.pop():
            order.append(node)
            continue
        if node in visited:
            continue
        visited.add(node)
        stack.append(node)
        children_done.append(True)
        for child in reversed(node._prev):
            if child not in visited:
                stack.append(child)
                children_done.append(False)
    return order
