"""The engine: every op against PyTorch (float64) and finite differences, graph shapes, numerics, errors.

PyTorch is the independent reference for values and gradients; ``gradcheck`` (central finite
differences) is the second one, which needs no other library at all.
"""

import math
import sys

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from chainrule import Value, gradcheck, no_grad
from chainrule.engine import PRIMITIVES, is_grad_enabled, topological_order


def tensor(x: float) -> torch.Tensor:
    return torch.tensor(float(x), dtype=torch.float64, requires_grad=True)


def torch_grad(t: torch.Tensor) -> float:
    """A leaf's gradient, 0.0 where the root does not depend on it (PyTorch leaves None)."""
    return 0.0 if t.grad is None else t.grad.item()


def close(a: float, b: float, rel: float = 1e-12, abs_: float = 1e-14) -> bool:
    return a == b or math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


# --- every op against PyTorch -------------------------------------------------------------------

# name -> (chainrule function, torch function, points inside the op's domain, away from kinks)
UNARY = {
    "neg":     (lambda x: -x,          lambda t: -t,          [-2.5, 0.0, 1.3]),
    "exp":     (Value.exp,             torch.exp,             [-3.0, 0.0, 0.7, 5.0]),
    "log":     (Value.log,             torch.log,             [1e-3, 0.5, 1.0, 7.0]),
    "tanh":    (Value.tanh,            torch.tanh,            [-4.0, -0.3, 0.0, 0.8, 2.5]),
    "sigmoid": (Value.sigmoid,         torch.sigmoid,         [-6.0, -0.3, 0.0, 0.8, 4.0]),
    "relu":    (Value.relu,            torch.relu,            [-2.0, -0.1, 0.4, 3.0]),
    "sqrt":    (Value.sqrt,            torch.sqrt,            [0.01, 0.5, 4.0, 9.0]),
    "abs":     (abs,                   torch.abs,             [-2.0, -0.1, 0.4, 3.0]),
    "pow2":    (lambda x: x ** 2,      lambda t: t ** 2,      [-1.5, 0.0, 2.0]),
    "pow3":    (lambda x: x ** 3,      lambda t: t ** 3,      [-1.5, 0.5, 2.0]),
    "pow-1":   (lambda x: x ** -1,     lambda t: t ** -1,     [-1.5, 0.5, 2.0]),
    "pow0.5":  (lambda x: x ** 0.5,    lambda t: t ** 0.5,    [0.3, 2.0]),
    "pow-2.5": (lambda x: x ** -2.5,   lambda t: t ** -2.5,   [0.3, 2.0]),
    "rpow":    (lambda x: 2.5 ** x,    lambda t: 2.5 ** t,    [-1.5, 0.0, 2.0]),
}

UNARY_CASES = [(name, x) for name, (_, _, points) in UNARY.items() for x in points]


@pytest.mark.parametrize(("name", "x"), UNARY_CASES, ids=[f"{n}({x})" for n, x in UNARY_CASES])
def test_unary_op_matches_torch(name, x):
    """Each one-input op gives PyTorch's float64 value and gradient, and passes gradcheck."""
    ours, theirs, _ = UNARY[name]
    v = Value(x)
    out = ours(v)
    out.backward()
    t = tensor(x)
    t_out = theirs(t)
    t_out.backward()
    assert close(out.data, t_out.item())
    assert close(v.grad, torch_grad(t))
    assert gradcheck(ours, [x])


@pytest.mark.parametrize("name", ["relu", "abs"])
def test_kinks_at_zero_have_pytorchs_gradient(name):
    """relu and abs at exactly 0 take the subgradient 0, as PyTorch does."""
    ours, theirs, _ = UNARY[name]
    v, t = Value(0.0), tensor(0.0)
    ours(v).backward()
    theirs(t).backward()
    assert v.grad == torch_grad(t) == 0.0


# name -> (function of two operands, domain of (a, b) pairs)
BINARY = {
    "+":  (lambda a, b: a + b,  [(2.0, -3.0), (0.5, 0.25)]),
    "-":  (lambda a, b: a - b,  [(2.0, -3.0), (0.5, 0.25)]),
    "*":  (lambda a, b: a * b,  [(2.0, -3.0), (0.5, 0.0)]),
    "/":  (lambda a, b: a / b,  [(2.0, -3.0), (0.0, 0.25)]),
    "**": (lambda a, b: a ** b, [(2.0, -3.0), (0.5, 0.25), (3.0, 2.0)]),
}

BINARY_CASES = [(op, a, b, sides) for op, (_, points) in BINARY.items() for a, b in points
                for sides in ("value-value", "value-number", "number-value")]


@pytest.mark.parametrize(("op", "a", "b", "sides"), BINARY_CASES,
                         ids=[f"{a}{op}{b}-{s}" for op, a, b, s in BINARY_CASES])
def test_binary_op_matches_torch(op, a, b, sides):
    """``+ - * / **`` with a Value or a plain number on either side match PyTorch, gradients to both sides."""
    fn = BINARY[op][0]
    va, vb = Value(a), Value(b)
    ta, tb = tensor(a), tensor(b)
    if sides == "value-value":
        out, t_out = fn(va, vb), fn(ta, tb)
    elif sides == "value-number":
        out, t_out = fn(va, b), fn(ta, b)
    else:
        out, t_out = fn(a, vb), fn(a, tb)
    assert isinstance(out, Value)
    out.backward()
    t_out.backward()
    assert close(out.data, t_out.item())
    if sides != "number-value":
        assert close(va.grad, torch_grad(ta))
    if sides != "value-number":
        assert close(vb.grad, torch_grad(tb))
    if sides == "value-value":
        assert gradcheck(fn, [a, b])


def test_value_power_value_sends_gradient_to_base_and_exponent():
    """``Value ** Value``: d/da = b*a**(b-1) and d/db = a**b * log(a), both reaching their leaves."""
    a, b = Value(1.7), Value(-0.6)
    out = a ** b
    out.backward()
    assert out._op == "**"
    assert a.grad == pytest.approx(-0.6 * 1.7 ** -1.6, rel=1e-14)
    assert b.grad == pytest.approx(1.7 ** -0.6 * math.log(1.7), rel=1e-14)


@pytest.mark.parametrize(("expr", "op"), [
    (lambda x: x + 1, "+"), (lambda x: x * 2, "*"), (lambda x: x ** 2, "**2"), (lambda x: x ** -1, "**-1"),
    (lambda x: x ** 0.5, "**0.5"), (lambda x: x ** x, "**"), (Value.exp, "exp"), (Value.log, "log"),
    (Value.tanh, "tanh"), (Value.sigmoid, "sigmoid"), (Value.relu, "relu"),
])
def test_op_names_match_the_lecture(expr, op):
    """``_op`` is the lecture's symbol for the op that made the node."""
    assert expr(Value(2.0))._op == op


def test_leaf_has_empty_op_and_no_inputs():
    """A plain Value is a leaf: no op, no inputs, gradient 0.0."""
    v = Value(4)
    assert (v._op, v._prev, v.grad, v.label) == ("", (), 0.0, "")
    assert type(v.data) is float and v.data == 4.0


def test_composites_are_built_from_primitives():
    """``-``, ``/`` and ``sqrt`` are compositions: the graph holds only primitive ops."""
    a, b = Value(3.0), Value(2.0)
    for out in (a - b, a / b, a.sqrt(), -a, abs(a)):
        assert {node._rule for node in topological_order(out) if node._prev} <= set(PRIMITIVES)


# --- random expression graphs -------------------------------------------------------------------

def _const(like, c: float):
    """A constant node of the same kind as ``like`` (a Value, or a tensor that needs no gradient)."""
    return Value(c) if isinstance(like, Value) else torch.tensor(c, dtype=torch.float64)


# Every op keeps its inputs inside the domain it needs (log/sqrt of a positive number, division by
# something nonzero), so the same program runs on chainrule, on PyTorch and under finite differences.
OPS = {
    "add":     lambda a, b, c: a + b,
    "sub":     lambda a, b, c: a - b,
    "mul":     lambda a, b, c: a * b,
    "div":     lambda a, b, c: a / (b * b + 1),
    "c+":      lambda a, b, c: c + a,
    "+c":      lambda a, b, c: a + c,
    "c-":      lambda a, b, c: c - a,
    "-c":      lambda a, b, c: a - c,
    "c*":      lambda a, b, c: c * a,
    "*c":      lambda a, b, c: a * c,
    "/c":      lambda a, b, c: a / c,
    "c/":      lambda a, b, c: c / (a * a + 1),
    "+C":      lambda a, b, c: a + _const(a, c),
    "*C":      lambda a, b, c: _const(a, c) * a,
    "neg":     lambda a, b, c: -a,
    "pow2":    lambda a, b, c: a ** 2,
    "pow3":    lambda a, b, c: a ** 3,
    "powc":    lambda a, b, c: (a * a + 0.5) ** c,
    "cpow":    lambda a, b, c: abs(c) ** a.tanh(),
    "powv":    lambda a, b, c: (a * a + 0.5) ** b.tanh(),
    "exp":     lambda a, b, c: a.exp(),
    "log":     lambda a, b, c: (a * a + 0.1).log(),
    "tanh":    lambda a, b, c: a.tanh(),
    "sigmoid": lambda a, b, c: a.sigmoid(),
    "relu":    lambda a, b, c: a.relu(),
    "abs":     lambda a, b, c: abs(a),
    "sqrt":    lambda a, b, c: (a * a + 0.1).sqrt(),
}
KINKED = {"relu", "abs"}

nonzero_constants = st.floats(0.3, 3.0).flatmap(lambda c: st.sampled_from([c, -c]))


@st.composite
def programs(draw):
    """(inputs, steps): each step applies an op to earlier nodes (any of them, so nodes fan out and repeat)."""
    inputs = draw(st.lists(st.floats(-1.5, 1.5), min_size=1, max_size=4))
    steps = []
    for k in range(draw(st.integers(0, 10))):
        size = len(inputs) + k
        steps.append((draw(st.sampled_from(sorted(OPS))), draw(st.integers(0, size - 1)),
                      draw(st.integers(0, size - 1)), draw(nonzero_constants)))
    return inputs, steps


def run_program(steps, leaves):
    """All nodes of the program; the root is the sum of every node made by a step (or of the inputs)."""
    nodes = list(leaves)
    for op, i, j, c in steps:
        nodes.append(OPS[op](nodes[i], nodes[j], c))
    made = nodes[len(leaves):] or nodes
    root = made[0]
    for node in made[1:]:
        root = root + node
    return nodes, root


def _check_tame(inputs, steps):
    """Skip programs whose numbers blow up or that sit on a kink (where gradients are honestly ambiguous)."""
    try:
        with no_grad():
            nodes, _ = run_program(steps, [Value(x) for x in inputs])
    except OverflowError:
        assume(False)
    assume(all(abs(n.data) < 100 for n in nodes))
    assume(all(abs(nodes[i].data) > 1e-3 for op, i, j, c in steps if op in KINKED))
    return nodes


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(programs())
def test_random_graphs_match_torch(program):
    """Random graphs of every primitive, with reuse and constants, give PyTorch's values and gradients."""
    inputs, steps = program
    _check_tame(inputs, steps)
    leaves = [Value(x) for x in inputs]
    tensors = [tensor(x) for x in inputs]
    _, root = run_program(steps, leaves)
    _, t_root = run_program(steps, tensors)
    root.backward()
    t_root.backward()
    assert close(root.data, t_root.item(), rel=1e-10, abs_=1e-12)
    for leaf, t in zip(leaves, tensors):
        assert close(leaf.grad, torch_grad(t), rel=1e-9, abs_=1e-11)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(programs())
def test_random_graphs_match_finite_differences(program):
    """Random graphs' gradients agree with central finite differences (gradcheck)."""
    inputs, steps = program
    nodes = _check_tame(inputs, steps)
    scale = 1 + sum(abs(n.data) for n in nodes)
    report = gradcheck(lambda *xs: run_program(steps, xs)[1], inputs, eps=1e-6, rtol=1e-5, atol=1e-7 * scale)
    assert report, str(report)


# --- graph shapes ---------------------------------------------------------------------------------

def test_fan_out_sums_every_path():
    """A node feeding three ops gets the sum of the three contributions (matches PyTorch)."""
    x, t = Value(0.8), tensor(0.8)
    (x * 2 + x.exp() + x.tanh()).backward()
    (t * 2 + t.exp() + t.tanh()).backward()
    assert close(x.grad, torch_grad(t))


def test_node_used_twice_accumulates():
    """``b = a + a`` gives ``a.grad == 2``, and ``_prev`` keeps both (ordered) references."""
    a = Value(3.0)
    b = a + a
    b.backward()
    assert a.grad == 2.0
    assert len(b._prev) == 2 and b._prev[0] is a and b._prev[1] is a


def test_constants_are_leaves_with_gradients():
    """Plain numbers become constant leaves: ``3*x + 2`` gives x.grad 3 and the constant 3 gets x."""
    x = Value(5.0)
    y = 3 * x + 2
    y.backward()
    assert x.grad == 3.0
    leaves = [n for n in topological_order(y) if not n._prev]
    assert sorted(n.data for n in leaves) == [2.0, 3.0, 5.0]
    three = next(n for n in leaves if n.data == 3.0)
    assert three.grad == 5.0


def test_identity_root_gets_gradient_one():
    """A leaf used as its own root: backward() gives it gradient 1.0."""
    a = Value(7.0)
    a.backward()
    assert a.grad == 1.0
    assert topological_order(a) == [a]


def test_million_deep_chain_without_recursion(monkeypatch):
    """A chain 1,000,000 ops deep backpropagates exactly, without touching the recursion limit."""
    def refuse(limit):
        raise AssertionError("the engine must not change the recursion limit")
    monkeypatch.setattr(sys, "setrecursionlimit", refuse)
    limit = sys.getrecursionlimit()
    n = 1_000_000
    x0, w = Value(1.0), Value(1.0)
    x = x0
    for _ in range(n):
        x = x * w            # x = x0 * w**n, so dx/dx0 = 1 and dx/dw = n with w = 1
    x.backward()
    assert x0.grad == 1.0
    assert w.grad == float(n)
    assert sys.getrecursionlimit() == limit
    del x                     # freeing the chain must not overflow the C stack either


def test_diamond_paths_are_counted_once_each():
    """30 doublings of the same node (2**30 paths) backprop quickly and exactly: each node visited once."""
    x = Value(1.0)
    y = x
    for _ in range(30):
        y = y + y
    y.backward()
    assert y.data == 2.0 ** 30
    assert x.grad == 2.0 ** 30
    assert len(topological_order(y)) == 31


def test_backward_twice_doubles_leaves_and_refreshes_interior():
    """Second backward(): leaf gradients exactly double; interior nodes show the latest pass, not a compounding."""
    a, b = Value(-2.0), Value(3.0)
    d = a * b
    e = a + b
    f = d * e
    f.backward()
    first = (a.grad, b.grad, d.grad, e.grad, f.grad)
    f.backward()
    assert (a.grad, b.grad) == (2 * first[0], 2 * first[1])
    assert (d.grad, e.grad, f.grad) == first[2:]


def test_backward_after_zero_grad_repeats_exactly():
    """Zeroing leaves between passes makes the second pass equal the first (the training-loop rule)."""
    x, w = Value(0.5), Value(-1.2)
    out = (x * w).tanh()
    out.backward()
    first = (x.grad, w.grad)
    x.grad = w.grad = 0.0
    out.backward()
    assert (x.grad, w.grad) == first


def test_backward_on_different_roots_sharing_a_subgraph():
    """Backward from two roots that share nodes: each call builds its own order, gradients stay right."""
    a, b = Value(2.0), Value(-4.0)
    c = a * b
    d = c + 1
    e = c * c
    d.backward()
    assert (a.grad, b.grad) == (-4.0, 2.0)
    a.grad = b.grad = 0.0
    e.backward()
    assert (a.grad, b.grad) == (2 * c.data * -4.0, 2 * c.data * 2.0)
    assert topological_order(e) == topological_order(e)


def test_topological_order_puts_inputs_first():
    """Every node appears once, after all of its inputs, root last."""
    a, b = Value(1.0), Value(2.0)
    c = a * b + a
    out = c.tanh() * c
    order = topological_order(out)
    position = {id(n): i for i, n in enumerate(order)}
    assert len(position) == len(order) and order[-1] is out
    for node in order:
        assert all(position[id(child)] < position[id(node)] for child in node._prev)


def test_equal_values_are_distinct_nodes():
    """Two Values holding the same number are two nodes: the graph walk goes by identity, not by value."""
    a, b = Value(1.5), Value(1.5)
    out = a * b
    order = topological_order(out)
    assert len(order) == 3 and order[0] is a and order[1] is b and order[2] is out
    out.backward()
    assert (a.grad, b.grad) == (1.5, 1.5)


# --- the lecture: backward by hand, and the mistakes learners make ----------------------------------

def lecture_neuron():
    x1 = Value(2.0, label="x1"); x2 = Value(0.0, label="x2")
    w1 = Value(-3.0, label="w1"); w2 = Value(1.0, label="w2")
    b = Value(6.8813735870195432, label="b")
    x1w1 = x1 * w1; x1w1.label = "x1*w1"
    x2w2 = x2 * w2; x2w2.label = "x2*w2"
    x1w1x2w2 = x1w1 + x2w2; x1w1x2w2.label = "x1*w1 + x2*w2"
    n = x1w1x2w2 + b; n.label = "n"
    o = n.tanh(); o.label = "o"
    return o, [x1, x2, w1, w2, b, x1w1, x2w2, x1w1x2w2, n, o]


def test_manual_backward_node_by_node_equals_backward():
    """Setting o.grad = 1 and calling ``_backward()`` node by node, as the lecture does, equals ``backward()``."""
    o, nodes = lecture_neuron()
    x1, x2, w1, w2, b, x1w1, x2w2, x1w1x2w2, n, _ = nodes
    o.grad = 1.0
    for node in (o, n, x1w1x2w2, x2w2, x1w1, b, w2, x2, w1, x1):
        node._backward()
    by_hand = [v.grad for v in nodes]
    o2, nodes2 = lecture_neuron()
    o2.backward()
    assert by_hand == [v.grad for v in nodes2]
    assert n.grad == pytest.approx(0.5) and x1.grad == pytest.approx(-1.5)


def test_lecture_mistake_reuse_with_assignment():
    """Lecture mistake ``=`` instead of ``+=``: with f = (a*b)*(a+b) at a=-2, b=3, a.grad is -3 and b.grad -8."""
    a, b = Value(-2.0), Value(3.0)
    f = (a * b) * (a + b)
    f.backward()
    assert (a.grad, b.grad) == (-3.0, -8.0)     # df/da = b(a+b) + ab, df/db = a(a+b) + ab


def test_lecture_mistake_tanh_forgets_upstream_gradient():
    """Lecture mistake: tanh's backward must multiply by out.grad (here 2), not drop it."""
    x = Value(0.5)
    (2 * x.tanh()).backward()
    assert x.grad == pytest.approx(2 * (1 - math.tanh(0.5) ** 2), rel=1e-15)


def test_lecture_mistake_division_cuts_denominator():
    """Lecture mistake ``self * other.data**-1``: here the denominator gets its gradient, -a/b**2."""
    a, b = Value(3.0), Value(2.0)
    (a / b).backward()
    assert a.grad == 0.5
    assert b.grad == -0.75


def test_lecture_mistake_tanh_through_exp_overflows():
    """Lecture mistake ``(exp(2x) - 1)/(exp(2x) + 1)``: here tanh(±1000) is ±1.0 with gradient 0, no overflow."""
    for x, expected in ((1000.0, 1.0), (-1000.0, -1.0)):
        v = Value(x)
        out = v.tanh()
        out.backward()
        assert out.data == expected
        assert v.grad == 0.0


def test_lecture_mistake_set_of_children_loses_repeats():
    """Lecture's ``set(_children)`` forgets order and repeats; ``_prev`` is the ordered tuple of inputs."""
    a, b = Value(1.0), Value(2.0)
    assert (a - b)._prev[0] is a
    assert (b * a)._prev == (b, a)


# --- numerics and errors ------------------------------------------------------------------------------

def test_tanh_and_sigmoid_are_finite_for_huge_inputs():
    """tanh(1000) is 1.0, and sigmoid(±1000) is finite (1.0 and 0.0) with finite gradients."""
    assert Value(1000).tanh().data == 1.0
    for x, expected in ((1000.0, 1.0), (-1000.0, 0.0)):
        v = Value(x)
        s = v.sigmoid()
        s.backward()
        assert s.data == expected
        assert math.isfinite(v.grad)
    assert Value(-30.0).sigmoid().data == pytest.approx(1 / (1 + math.exp(30)), rel=1e-15)


def test_exp_overflow_names_exp_and_input():
    """exp(1000) raises OverflowError whose message names exp and the input."""
    with pytest.raises(OverflowError, match=r"exp\(1000\.0\)"):
        Value(1000.0).exp()


@pytest.mark.parametrize("x", [0.0, -2.0])
def test_log_of_non_positive_names_log(x):
    """log(0) and log(-2) raise ValueError naming log and the input."""
    with pytest.raises(ValueError, match=rf"log\({x!r}\)"):
        Value(x).log()


@pytest.mark.parametrize("make", [lambda: Value(1.0) / 0, lambda: Value(1.0) / Value(0.0), lambda: 1 / Value(0.0),
                                  lambda: Value(0.0) ** -1])
def test_division_by_zero(make):
    """Dividing by zero (as a number, a Value, or via ``** -1``) raises ZeroDivisionError."""
    with pytest.raises(ZeroDivisionError):
        make()


@pytest.mark.parametrize("make", [lambda: Value(1) + "x", lambda: "x" + Value(1), lambda: Value(1) * [2],
                                  lambda: Value(1) ** "2", lambda: Value(1) / None, lambda: Value(1) - "x"])
def test_non_number_operand_is_type_error(make):
    """A non-number operand is a TypeError (the dunders return NotImplemented)."""
    with pytest.raises(TypeError):
        make()


@pytest.mark.parametrize(("data", "shown"), [("abc", "str 'abc'"), (None, "NoneType None"), ([1.0], "list [1.0]"),
                                             (Value(2.0), "Value")])
def test_value_of_non_number_is_type_error_naming_it(data, shown):
    """Value() of a string, None, a list or another Value is a TypeError naming what was given."""
    with pytest.raises(TypeError, match=r"needs a real number") as info:
        Value(data)
    assert shown in str(info.value)


def test_value_accepts_ints_and_numpy_scalars_as_floats():
    """ints and numpy real scalars are stored as Python floats."""
    for data in (3, np.float64(2.5), np.float32(0.5), np.int64(-4)):
        v = Value(data)
        assert type(v.data) is float and v.data == float(data)


def test_hand_made_node_with_unknown_op_fails_loudly_on_backward():
    """A node made by hand with an op that has no rule raises NotImplementedError naming the op."""
    a, b = Value(1.0), Value(2.0)
    c = Value(2.0, (a, b), "max")
    assert c._op == "max"
    with pytest.raises(NotImplementedError, match="'max'"):
        c.backward()


def test_hand_made_node_with_known_op_uses_its_rule():
    """A node made by hand as ``Value(data, (a, b), '*')`` backpropagates with the product rule."""
    a, b = Value(3.0), Value(-2.0)
    c = Value(a.data * b.data, (a, b), "*")
    c.backward()
    assert (a.grad, b.grad) == (-2.0, 3.0)


def test_no_grad_records_nothing_and_restores():
    """Inside no_grad() results have no inputs; grad mode comes back afterwards, even after an error."""
    x = Value(3.0)
    with no_grad():
        assert not is_grad_enabled()
        y = (x * x).tanh() + 1
    assert y._prev == () and y._op == "" and y.data == pytest.approx(math.tanh(9) + 1)
    assert is_grad_enabled()
    with pytest.raises(ZeroDivisionError), no_grad():
        x / 0
    assert is_grad_enabled()
    assert (x * x)._prev == (x, x)


def test_repr_shows_label_data_and_grad():
    """repr shows the label (when set), data and grad to 4 decimals."""
    x = Value(2.0, label="x1")
    x.grad = -1.5
    assert repr(x) == "Value(label='x1', data=2.0000, grad=-1.5000)"
    assert repr(Value(0.5)) == "Value(data=0.5000, grad=0.0000)"


def test_data_and_label_are_settable():
    """.data and .label can be set, as the lecture's training loop and drawings do."""
    v = Value(1.0)
    v.data += 0.5
    v.label = "w"
    assert (v.data, v.label) == (1.5, "w")
    assert float(v) == 1.5
