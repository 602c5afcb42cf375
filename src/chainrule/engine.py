"""The engine: a scalar ``Value`` that remembers how it was made, and backpropagation.

Read this file top to bottom, like a chapter (the math it uses is in :mod:`chainrule.mathspace`,
the table of op rules in :mod:`chainrule.primitives`):

(Grad mode, per thread, is in :mod:`chainrule.gradmode`: ``no_grad()`` turns graph recording off
in the thread that enters it.)

1. ``Value``: arithmetic builds the graph, each result pointing at its inputs and at its row of
   the table. ``backward()`` walks the graph in reverse topological order and applies the rules.
   Ops that are not primitives (``-``, ``abs``) are one-line compositions of primitives.
2. The lecture's way works too: ``out._backward = fn`` gives a node its own closure, which
   ``backward()`` then calls instead of a table rule. ``primitive(name, forward, backward)`` adds a
   row to the table instead, which the compiled replay can also run on arrays.

The rule for gradients, which ``backward()`` documents too: a pass sets the root's gradient to 1,
resets every *interior* node it reaches to 0 first, and adds (``+=``) into *leaves*. So calling
``backward()`` twice doubles leaf gradients, while interior nodes show the latest pass. (PyTorch
refuses a second backward through the same graph unless ``retain_graph=True``, and then
accumulates the same way.) Call ``zero_grad()`` (or set ``p.grad = 0.0``) between training steps.

Numbers: a Value holds any float, ``nan`` and ``inf`` included, and arithmetic on them follows
IEEE floats as Python and PyTorch do. Where a *finite* input has no finite real result (``exp``
past about 709.78, ``log`` of a non-positive number, ``0 ** -1``, ``x / 0``, a negative number to a
fractional power, ``sqrt`` of a negative number) the op raises an error naming itself. Derivatives
follow PyTorch's formulas: ``sqrt`` at 0 has slope ``inf``; ``0 ** 0`` is 1 with gradient 0.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import math
import numbers
import types
from contextlib import contextmanager
from typing import Callable, Iterator

from . import gradmode
from .gradmode import enable_grad, is_grad_enabled, no_grad, track_created
from .gradmode import note as _note
from .mathspace import ARRAY, SCALAR
from .primitives import PRIMITIVES, VALUE, Primitive, constant_display, register

__all__ = ["ARRAY", "PRIMITIVES", "SCALAR", "VALUE", "Primitive", "Value", "enable_grad", "grad",
           "is_grad_enabled", "no_grad", "primitive", "rule_of", "topological_order", "track_created"]


# --- 1. Value -------------------------------------------------------------------------------------

def _check_number(data, who: str = "Value()") -> float:
    if type(data) is float:
        return data
    if isinstance(data, numbers.Real) and not isinstance(data, bool):
        try:
            return float(data)
        except OverflowError:
            digits = int(abs(int(data)).bit_length() * math.log10(2)) + 1
            raise OverflowError(f"{who} got an integer of about {digits} digits, too large for a float "
                                f"(the largest float is about 1.8e308)") from None
    shown = repr(data) if not isinstance(data, numbers.Number) else type(data).__name__
    if len(shown) > 40:
        shown = shown[:37] + "..."
    hint = " (use .data to get a Value's number)" if isinstance(data, Value) else ""
    raise TypeError(f"{who} needs a real number, got {type(data).__name__} {shown}{hint}")


class _Custom:
    """The op of a node without a table rule: a hand-made op name, maybe with the lecture's closure."""

    __slots__ = ("name", "fn")
    kind = 0

    def __init__(self, name: str, fn: Callable | None = None):
        self.name, self.fn = name, fn

    def step(self, node: "Value") -> None:
        if self.fn is not None:
            self.fn()
        elif node._a:
            raise NotImplementedError(_no_rule_message(self.name))


def _no_rule_message(name: str) -> str:
    if not name:
        return ("a hand-made node with inputs but no op has no derivative rule: give it a closure as the "
                "lecture does (out._backward = _backward), or build it with an op of the table")
    return (f"no derivative rule for op {name!r}: give the node a closure as the lecture does "
            f"(out._backward = _backward), or add a table rule with chainrule.primitive({name!r}, "
            f"forward, backward); the table has " + ", ".join(PRIMITIVES))


_new = object.__new__


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

    # One object per node and no closures: a node holds its rule and its inputs in slots (``_a``,
    # ``_b``; no tuple, which would be a second object for Python's cycle collector to scan), so
    # reference counting frees a graph the moment it is dropped. ``_prev``, ``_op`` and
    # ``_backward`` are the lecture's names, computed from these slots.
    __slots__ = ("data", "grad", "label", "_node", "_a", "_b")

    def __init_subclass__(cls, **kwargs):
        # Results of ops keep a learner's subclass (so its methods chain), unless the subclass has an
        # __init__ of its own: results skip __init__, and would lack what it sets.
        super().__init_subclass__(**kwargs)
        cls._result_type = cls if cls.__init__ is Value.__init__ else Value

    def __new__(cls, *args, **kwargs):
        # Every slot starts filled, so a learner's subclass with its own __init__ (the lecture's
        # ``self._prev = set(_children)``, ``self._backward = lambda: None``) still works.
        self = _new(cls)
        self.data, self.grad, self.label = 0.0, 0.0, ""
        self._node = self._a = self._b = None
        return self

    def __init__(self, data, _children=(), _op: str = "", label: str = ""):
        self.data = _check_number(data)
        self.label = label
        children = tuple(_children)
        for child in children:
            if not isinstance(child, Value):
                raise TypeError(f"Value(..., _children) takes Values, got {type(child).__name__}")
        rule = PRIMITIVES.get(_op) if children else None
        if rule is not None:
            _check_arity(rule, children)
            self._node = rule
            if rule.kind == 0:
                self._a = children
            else:
                self._a = children[0]
                self._b = children[1] if rule.kind == 2 else None
        elif children or _op:
            # An op without a rule, kept for display; it needs a closure (or a rule) to backpropagate.
            self._node = _Custom(str(_op))
            self._a = children or None
        if gradmode.open_blocks:
            _note(self)

    # The lecture's view of a node: its inputs, its op's name, its chain-rule step.

    @property
    def _prev(self) -> tuple:
        """The inputs this node was computed from, in order (``()`` for a leaf)."""
        rule = self._node
        if rule is None:
            return ()
        kind = rule.kind
        if kind == 2:
            return (self._a, self._b)
        if kind:
            return (self._a,)
        return self._a or ()

    @_prev.setter
    def _prev(self, children) -> None:
        children = tuple(children)
        if type(self._node) is not _Custom and children == self._prev and children:
            return                      # the same inputs: keep the table rule
        self._node = _Custom(self._op, self._custom_fn())
        self._a, self._b = children or None, None

    @property
    def _op(self) -> str:
        """The op that produced this node as the lecture writes it: ``+``, ``*``, ``**2``, ``tanh``."""
        rule = self._node
        if rule is None:
            return ""
        if rule.kind == 3:
            return rule.symbol + constant_display(self._b)
        return rule.name

    @_op.setter
    def _op(self, name: str) -> None:
        name = str(name)
        if type(self._node) is _Custom:
            self._node.name = name
        elif self._node is None:
            self._node = _Custom(name)
        elif name != self._op:
            # A new display name for a table node: it keeps its derivative, as its own step.
            step, children = self._backward, self._prev
            self._node = _Custom(name, step)
            self._a, self._b = children, None

    @property
    def _rule(self) -> str:
        """The name of this node's row in the table (``**k`` for ``x ** 2``), ``""`` for a leaf."""
        return "" if self._node is None else self._node.name

    @property
    def _arg(self):
        """The constant of a ``**k`` node (its exponent), None for every other node."""
        rule = self._node
        return self._b if rule is not None and rule.kind == 3 else None

    def _custom_fn(self):
        return self._node.fn if type(self._node) is _Custom else None

    @property
    def _backward(self) -> Callable[[], None]:
        """This node's local chain-rule step: adds its share of ``self.grad`` into each input.

        The lecture first calls it by hand, node by node; ``backward()`` calls it for every node in
        reverse topological order. Assigning a function (``out._backward = _backward``) gives the
        node the lecture's own closure, which then replaces the table rule for this node.
        """
        rule = self._node
        if rule is None:
            return _nothing
        if type(rule) is _Custom:
            return rule.fn if rule.fn is not None else types.MethodType(rule.step, self)
        # Bound now, so the step still works after the node is given a closure that calls it.
        return functools.partial(_step, rule, self, self._prev, self._b if rule.kind == 3 else None)

    @_backward.setter
    def _backward(self, fn: Callable[[], None]) -> None:
        if not callable(fn):
            raise TypeError(f"_backward must be a function of no arguments, got {type(fn).__name__}")
        children = self._prev
        self._node = _Custom(self._op, fn)
        self._a, self._b = children or None, None

    def __repr__(self) -> str:
        label = f"label={self.label!r}, " if self.label else ""
        return f"Value({label}data={self.data:.4f}, grad={self.grad:.4f})"

    def __float__(self) -> float:
        if gradmode.open_blocks and gradmode.in_value_pass():
            raise TypeError("a rule turned a Value into a plain number (float(), or math.* on it) while "
                            "grad(create_graph=True) ran it on Values: write the rule with the namespace "
                            "m's functions and arithmetic only, so its derivative can be taken too")
        return self.data

    def __format__(self, spec: str) -> str:
        # f"{v:.4f}" formats the number, so a Value can stand where a float is printed (a .grad
        # that backward(create_graph=True) made a Value, say).
        return format(self.data, spec) if spec else repr(self)

    def _apply(self, rule: Primitive, *inputs) -> "Value":
        """``inputs`` (Values or numbers, this one among them) through one row of the table; a row
        with a constant takes ``(value, constant)``. The namespace on Values calls rows through it."""
        if rule.kind == 3:
            return _with_constant(rule, _wrap(inputs[0]), float(inputs[1]))
        return _apply(rule, inputs)

    # The primitives. Each wraps a plain number into a constant Value so it shows in the graph.

    def __add__(self, other):
        if not isinstance(other, Value):
            other = _wrap(other)
            if other is None:
                return NotImplemented
        return _binary(_ADD, self, other)

    def __mul__(self, other):
        if not isinstance(other, Value):
            other = _wrap(other)
            if other is None:
                return NotImplemented
        return _binary(_MUL, self, other)

    def __truediv__(self, other):
        if not isinstance(other, Value):
            other = _wrap(other)
            if other is None:
                return NotImplemented
        return _binary(_DIV, self, other)

    def __rtruediv__(self, other):        # other / self
        other = _wrap(other)
        return NotImplemented if other is None else _binary(_DIV, other, self)

    def __pow__(self, other):
        if isinstance(other, Value):
            return _binary(_POW, self, other)
        if isinstance(other, numbers.Real) and not isinstance(other, bool):
            return _with_constant(_POWK, self, _check_number(other, "the exponent of **"))
        return NotImplemented

    def __rpow__(self, other):            # other ** self, with a Value exponent
        other = _wrap(other)
        return NotImplemented if other is None else _binary(_POW, other, self)

    def exp(self) -> "Value":
        """e ** self. Raises OverflowError naming exp and the input past about 709.78."""
        return _unary(_EXP, self)

    def log(self) -> "Value":
        """Natural logarithm. Raises ValueError naming log and the input for a non-positive number."""
        return _unary(_LOG, self)

    def sqrt(self) -> "Value":
        """Square root. Its slope at 0 is inf (as in PyTorch); a negative input raises naming sqrt."""
        return _unary(_SQRT, self)

    def tanh(self) -> "Value":
        """Hyperbolic tangent, exact and finite for every finite input."""
        return _unary(_TANH, self)

    def sigmoid(self) -> "Value":
        """1 / (1 + e ** -self), exact and finite for every finite input."""
        return _unary(_SIGMOID, self)

    def relu(self) -> "Value":
        """max(self, 0); its gradient is 0 at 0 and below, as in PyTorch (nan stays nan)."""
        return _unary(_RELU, self)

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

    def __abs__(self) -> "Value":         # |x| is relu(x) + relu(-x)
        return self.relu() + (-self).relu()

    # Backpropagation.

    def backward(self, on_step: Callable[["Value"], None] | None = None, create_graph: bool = False) -> None:
        """Fill in ``.grad`` of every node this one depends on, by the chain rule.

        The walk is iterative, so graphs of any depth work. Gradients of leaves (inputs and
        parameters) accumulate across calls: calling ``backward()`` twice doubles them, so zero them
        between training steps (``model.zero_grad()``). Interior nodes are reset on every call and
        show the latest pass. ``on_step(node)``, if given, is called after each node's local step
        (that is how ``explain`` and the step-through view watch backward run). Python's cycle
        collector is paused during the walk (it would only rescan the live graph) and restored.

        With ``create_graph=True`` the backward pass is itself recorded: each *leaf*'s ``.grad``
        becomes a Value (added to what it held) whose graph can be backpropagated again, for second
        derivatives; interior nodes get the number. ``chainrule.grad`` does the same without
        touching any ``.grad``.

        >>> a = Value(3.0); b = a * a
        >>> b.backward(); a.grad
        6.0
        >>> b.backward(); a.grad
        12.0
        >>> x = Value(2.0); (x ** 3).backward(create_graph=True)
        >>> x.grad.data, grad(x.grad, [x])[0].data        # 3x^2 and 6x
        (12.0, 12.0)
        """
        if create_graph:
            grads, order = _gradients(self, VALUE, "backward(create_graph=True)")
            for node in order:
                g = grads.get(node, 0.0)
                if node._a is None:
                    node.grad = node.grad + g
                else:
                    node.grad = g.data if isinstance(g, Value) else g
            return
        with collector_paused():
            order = topological_order(self)
            for node in order:
                if node._a is not None:
                    node.grad = 0.0
            self.grad += 1.0
            for node in reversed(order):
                rule = node._node
                if rule is None:
                    if on_step is not None:
                        on_step(node)
                    continue
                kind = rule.kind
                # The three common shapes inline (this loop is the hot path), the rest through step.
                if kind == 2:
                    a, b = node._a, node._b
                    ga, gb = rule.backward(SCALAR, node.grad, node.data, a.data, b.data)
                    a.grad += ga
                    b.grad += gb
                elif kind == 1:
                    a = node._a
                    a.grad += rule.backward(SCALAR, node.grad, node.data, a.data)[0]
                elif kind == 3:
                    a = node._a
                    a.grad += rule.backward(SCALAR, node.grad, node.data, a.data, node._b)[0]
                elif type(rule) is _Custom:
                    rule.step(node)
                else:
                    _step(rule, node, node._a, None)
                if on_step is not None:
                    on_step(node)


Value._result_type = Value


def _nothing() -> None:
    """A leaf's chain-rule step: nothing to pass on."""


def _step(rule: Primitive, node: Value, inputs: tuple, k) -> None:
    """One node's table-rule step: ``node._backward()`` by hand, and backward() for the shapes it
    does not inline (a rule of three or more inputs). A user's rule checks its own term count."""
    args = [c.data for c in inputs] + ([k] if rule.kind == 3 else [])
    for child, term in zip(inputs, rule.backward(SCALAR, node.grad, node.data, *args)):
        child.grad += term


def _check_arity(rule: Primitive, children: tuple) -> None:
    if rule.kind == 3:
        raise ValueError(f"op {rule.name!r} needs its constant exponent: write a ** k instead of "
                         f"building the node by hand" if rule.name == "**k" else
                         f"op {rule.name!r} needs its constant: it is made by the engine, not by hand")
    if len(children) != rule.n_inputs:
        raise ValueError(f"op {rule.name!r} takes {rule.n_inputs} input{'s' * (rule.n_inputs != 1)}, "
                         f"got {len(children)}: pass exactly that many Values as _children")


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cycle collector for a block, then restore the user's setting.

    A graph of Values without closures holds no reference cycles, so reference counting frees it
    as soon as it is dropped; the collector would only rescan the thousands of fresh nodes a pass
    makes. chainrule pauses it inside its own loops (backward, recording, fit) and nowhere else.
    """
    was_enabled = gc.isenabled()
    if was_enabled:
        gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# How results are made: one function per shape of node, each filling every slot.

def _binary(rule: Primitive, a: Value, b: Value) -> Value:
    out = _new(a._result_type)
    out.data = rule.forward(SCALAR, a.data, b.data)
    out.grad = 0.0
    out.label = ""
    if gradmode.open_blocks and not _note(out):
        out._node = out._a = out._b = None
    else:
        out._node, out._a, out._b = rule, a, b
    return out


def _unary(rule: Primitive, a: Value) -> Value:
    out = _new(a._result_type)
    out.data = rule.forward(SCALAR, a.data)
    out.grad = 0.0
    out.label = ""
    out._b = None
    if gradmode.open_blocks and not _note(out):
        out._node = out._a = None
    else:
        out._node, out._a = rule, a
    return out


def _with_constant(rule: Primitive, a: Value, k: float) -> Value:
    out = _new(a._result_type)
    out.data = rule.forward(SCALAR, a.data, k)
    out.grad = 0.0
    out.label = ""
    if gradmode.open_blocks and not _note(out):
        out._node = out._a = out._b = None
    else:
        out._node, out._a, out._b = rule, a, k
    return out


def _many(rule: Primitive, inputs: tuple) -> Value:
    out = _new(inputs[0]._result_type)
    out.data = rule.forward(SCALAR, *[v.data for v in inputs])
    out.grad = 0.0
    out.label = ""
    out._b = None
    if gradmode.open_blocks and not _note(out):
        out._node = out._a = None
    else:
        out._node, out._a = rule, inputs
    return out


def _wrap(x) -> Value | None:
    """A Value stays itself, a real number becomes a constant Value, anything else is None."""
    if isinstance(x, Value):
        return x
    if type(x) is float or (isinstance(x, numbers.Real) and not isinstance(x, bool)):
        # A constant leaf, made directly: ``n([2.0, 3.0])`` makes one per weight, as in the lecture.
        out = _new(Value)
        out.data = x if type(x) is float else _check_number(x)
        out.grad = 0.0
        out.label = ""
        out._node = out._a = out._b = None
        if gradmode.open_blocks:
            _note(out)
        return out
    return None


_ADD, _MUL, _DIV, _POW, _POWK = (PRIMITIVES[k] for k in ("+", "*", "/", "**", "**k"))
_EXP, _LOG, _SQRT, _TANH, _SIGMOID, _RELU = (PRIMITIVES[k] for k in ("exp", "log", "sqrt", "tanh",
                                                                     "sigmoid", "relu"))


def topological_order(root: Value) -> list[Value]:
    """Every node ``root`` depends on, each after all of its inputs (root last). No recursion.

    >>> a = Value(1.0, label="a"); b = Value(2.0, label="b"); c = a * b; c.label = "c"
    >>> [v.label for v in topological_order(c)]
    ['a', 'b', 'c']
    """
    order: list[Value] = []
    # Values hash by identity (Value defines no __eq__), so the set holds the nodes themselves.
    visited: set[Value] = set()
    # A node is emitted when it is met the second time, after everything it depends on: a
    # depth-first post-order without recursion, on two flat stacks (no per-node tuples).
    stack: list[Value] = [root]
    children_done: list[bool] = [False]
    push, mark = stack.append, children_done.append
    while stack:
        node = stack.pop()
        if children_done.pop():
            order.append(node)
            continue
        if node in visited:
            continue
        visited.add(node)
        push(node)
        mark(True)
        rule = node._node
        if rule is None:
            continue
        kind = rule.kind
        if kind == 2:
            b = node._b
            if b not in visited:
                push(b)
                mark(False)
            a = node._a
            if a not in visited:
                push(a)
                mark(False)
        elif kind:
            a = node._a
            if a not in visited:
                push(a)
                mark(False)
        elif node._a:
            for child in reversed(node._a):
                if child not in visited:
                    push(child)
                    mark(False)
    return order


def rule_of(v: Value) -> Primitive | None:
    """The table row that computed ``v``, or None for a leaf.

    Raises NotImplementedError for a node without a table rule (the lecture's closure style, or a
    hand-made op name), which a replay on arrays cannot run.

    >>> from chainrule import Value
    >>> rule_of(Value(2.0) * 3).name, rule_of(Value(2.0))
    ('*', None)
    """
    rule = v._node
    if type(rule) is _Custom:
        if not v._a:
            return None
        if rule.fn is not None:
            raise NotImplementedError(
                f"op {rule.name!r} is defined by a closure (out._backward = ...), which runs only on "
                f"single numbers: make it a table rule with chainrule.primitive({rule.name!r}, forward, "
                f"backward) so that it also runs on arrays")
        raise NotImplementedError(_no_rule_message(rule.name))
    return rule


def primitive(name: str, forward: Callable, backward: Callable, n_inputs: int | None = None,
              replace: bool = False) -> Callable:
    """Add an op to the table of primitives; returns a function that applies it to Values or numbers.

    ``forward(m, a, ...)`` computes the result and ``backward(m, g, out, a, ...)`` returns one
    gradient term per input, both written with the math namespace ``m`` (its functions and plain
    arithmetic), so the same rule runs eagerly on floats and in the compiled replay on arrays. The op
    then works in ``backward()``, ``gradcheck``, drawings, ``explain`` and ``chainrule.compile``.
    A name that exists is an error; ``replace=True`` redefines an op you added (a notebook cell run
    again), never a built-in one. ``n_inputs`` is needed only when ``forward`` takes ``*args``.

    >>> from chainrule import Value, primitive
    >>> square = primitive("square_doc", lambda m, a: a * a, lambda m, g, out, a: (g * 2 * a,))
    >>> x = Value(3.0); y = square(x); y.backward()
    >>> y.data, x.grad, y._op
    (9.0, 6.0, 'square_doc')
    """
    rule = register(name, forward, backward, n_inputs, replace)

    def apply(*inputs) -> Value:
        if len(inputs) != rule.n_inputs:
            raise TypeError(f"{name} takes {rule.n_inputs} input{'s' * (rule.n_inputs != 1)}, got {len(inputs)}")
        return _apply(rule, inputs)

    apply.__name__ = apply.__qualname__ = name if name.isidentifier() else "apply"
    apply.__doc__ = f"Apply the primitive {name!r} (added with chainrule.primitive)."
    apply.rule = rule
    return apply


def _apply(rule: Primitive, inputs: tuple) -> Value:
    """Values or numbers through one row of the table (any number of inputs)."""
    values = []
    for x in inputs:
        v = _wrap(x)
        if v is None:
            raise TypeError(f"{rule.name} takes Values or numbers, got {type(x).__name__}")
        values.append(v)
    if rule.kind == 2:
        return _binary(rule, values[0], values[1])
    if rule.kind == 1:
        return _unary(rule, values[0])
    return _many(rule, tuple(values))


# --- 3. Gradients as Values: grad(), and derivatives of any order -----------------------------------

def _gradients(root: Value, m, who: str) -> tuple[dict, list]:
    """Every node's gradient of ``root`` by the table's rules run on namespace ``m``, touching no .grad.

    With ``m = VALUE`` the rules receive the nodes themselves and build the backward pass as a graph.
    """
    building = m is VALUE
    # Building the backward graph needs recording on (even inside no_grad), and no rule may turn a
    # Value into a float on the way (that would silently cut the derivative).
    with collector_paused(), (gradmode.value_pass() if building else contextlib.nullcontext()):
        order = topological_order(root)
        grads: dict = {root: 1.0}
        for node in reversed(order):
            rule = node._node
            g = grads.get(node)
            if rule is None or g is None:
                continue
            if type(rule) is _Custom:
                if not node._a:
                    continue
                raise NotImplementedError(
                    f"{who} runs the table's rules, and op {rule.name!r} is "
                    + ("a closure (out._backward = ...), which only adds numbers into .grad"
                       if rule.fn is not None else "a hand-made node without a rule")
                    + f": make it a table rule with chainrule.primitive({rule.name!r}, forward, backward)")
            inputs = node._prev
            args = list(inputs) if building else [c.data for c in inputs]
            if rule.kind == 3:
                args.append(node._b)
            try:
                terms = rule.backward(m, g, node if building else node.data, *args)
            except TypeError as e:
                if not building:
                    raise
                raise TypeError(f"the rule of {rule.name!r} cannot run on Values for create_graph=True ({e}): "
                                f"write it with m's functions and arithmetic, comparisons as m.le(x, c), "
                                f"m.ge(x, c), m.eq(x, c) inside m.where") from None
            for child, term in zip(inputs, terms):
                had = grads.get(child)
                grads[child] = term if had is None else had + term
    return grads, order


def grad(output: Value, inputs, create_graph: bool = False) -> list[Value]:
    """The gradients of ``output`` with respect to each Value in ``inputs``, as Values.

    Like ``torch.autograd.grad``: no ``.grad`` is touched. With ``create_graph=False`` the results
    are constants; with ``create_graph=True`` they carry the graph of the backward pass, so the
    gradient of a gradient is a second derivative (any order works). An input ``output`` does not
    depend on gets 0. Built from the table's rules, run on Values: an op defined by a closure (the
    lecture's ``out._backward``) raises, saying how to make it a table rule.

    >>> from chainrule import Value, grad
    >>> x = Value(3.0)
    >>> y = 3 * x**2 - 4 * x + 5
    >>> dy, = grad(y, [x], create_graph=True)
    >>> d2y, = grad(dy, [x])
    >>> dy.data, d2y.data, x.grad                       # 6x - 4, then 6; x.grad untouched
    (14.0, 6.0, 0.0)
    """
    if not isinstance(output, Value):
        raise TypeError(f"grad needs a Value to differentiate, got {type(output).__name__}")
    if isinstance(inputs, Value):
        raise TypeError("grad takes a list of Values as inputs (grad(y, [x]), like torch.autograd.grad)")
    inputs = list(inputs)
    for i, x in enumerate(inputs):
        if not isinstance(x, Value):
            raise TypeError(f"inputs[{i}] must be a Value, got {type(x).__name__}")
    grads, _ = _gradients(output, VALUE if create_graph else SCALAR, "grad()")
    results = []
    for x in inputs:
        g = grads.get(x, 0.0)
        results.append(g if isinstance(g, Value) else Value(g))
    return results
