"""Gradients of gradients: ``grad(output, inputs, create_graph=True)``, against PyTorch and finite differences."""

import math
import random

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from test_engine import OPS, _check_tame, programs, run_program

import chainrule
from chainrule import MLP, Value, grad, gradcheck


def t(x):
    return torch.tensor(float(x), dtype=torch.float64, requires_grad=True)


def close(a, b, rel=1e-9, abs_=1e-12):
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


def torch_derivatives(fn, x0, order):
    """d^k fn / dx^k at x0 for k = 1..order, by torch.autograd.grad(create_graph=True)."""
    x = t(x0)
    y = fn(x)
    out = []
    for _ in range(order):
        if not y.requires_grad:             # a constant: every further derivative is 0
            out.extend([0.0] * (order - len(out)))
            break
        (y,) = torch.autograd.grad(y, [x], create_graph=True, allow_unused=True)
        if y is None:
            out.extend([0.0] * (order - len(out)))
            break
        out.append(y.item())
    return out


def our_derivatives(fn, x0, order):
    x = Value(x0)
    y = fn(x)
    out = []
    for _ in range(order):
        (y,) = grad(y, [x], create_graph=True)
        out.append(y.data)
    return out


UNARY = {
    "exp": (Value.exp, torch.exp, [-1.0, 0.5]),
    "log": (Value.log, torch.log, [0.3, 2.0]),
    "sqrt": (Value.sqrt, torch.sqrt, [0.3, 4.0]),
    "tanh": (Value.tanh, torch.tanh, [-0.7, 0.4]),
    "sigmoid": (Value.sigmoid, torch.sigmoid, [-1.2, 0.8]),
    "relu": (Value.relu, torch.relu, [-0.5, 0.9]),
    "pow3": (lambda x: x ** 3, lambda x: x ** 3, [-1.1, 0.6]),
    "pow-1.5": (lambda x: x ** -1.5, lambda x: x ** -1.5, [0.4, 2.0]),
    "pow0": (lambda x: x ** 0, lambda x: x ** 0, [0.7]),
    "div": (lambda x: 1.3 / (x * x + 1), lambda x: 1.3 / (x * x + 1), [-0.8, 0.5]),
    "x/c": (lambda x: x / 3.0, lambda x: x / 3.0, [0.5]),
    "x**x": (lambda x: x ** x, lambda x: x ** x, [0.6, 1.7]),
    "c**x": (lambda x: 2.5 ** x, lambda x: 2.5 ** x, [-0.4, 1.1]),
    "abs": (abs, torch.abs, [-0.6, 0.9]),
    "mul-add": (lambda x: x * x * 0.5 + x * 3 - 1, lambda x: x * x * 0.5 + x * 3 - 1, [0.3]),
}
CASES = [(name, x) for name, (_, _, xs) in UNARY.items() for x in xs]


@pytest.mark.parametrize(("name", "x0"), CASES, ids=[f"{n}({x})" for n, x in CASES])
def test_second_and_third_derivatives_of_every_primitive_match_torch(name, x0):
    """grad of grad (of grad) of each op equals torch.autograd.grad(create_graph=True), 1e-9 relative."""
    ours_fn, torch_fn, _ = UNARY[name]
    ours = our_derivatives(ours_fn, x0, 3)
    theirs = torch_derivatives(torch_fn, x0, 3)
    assert all(close(a, b) for a, b in zip(ours, theirs)), (ours, theirs)


def test_the_lecture_polynomial_has_second_derivative_six():
    """3x**2 - 4x + 5: 6x - 4 and then 6, by grad and by nudging."""
    x = Value(3.0)
    y = 3 * x ** 2 - 4 * x + 5
    (dy,) = grad(y, [x], create_graph=True)
    (d2y,) = grad(dy, [x])
    h = 1e-4
    f = lambda v: 3 * v ** 2 - 4 * v + 5  # noqa: E731
    nudged = (f(3.0 + h) - 2 * f(3.0) + f(3.0 - h)) / h ** 2
    assert (dy.data, d2y.data) == (14.0, 6.0)
    assert nudged == pytest.approx(6.0, rel=1e-6)


def test_second_derivative_of_the_power_with_a_value_exponent():
    """Mixed partials of a ** b match torch (the exponent's rule selects at a == 0)."""
    for a0, b0 in [(1.7, -0.6), (0.5, 2.0), (2.0, 3.0)]:
        a, b = Value(a0), Value(b0)
        da, db = grad(a ** b, [a, b], create_graph=True)
        second = [g.data for g in grad(da, [a, b]) + grad(db, [a, b])]
        ta, tb = t(a0), t(b0)
        tda, tdb = torch.autograd.grad(ta ** tb, [ta, tb], create_graph=True)
        expected = [g.item() for g in torch.autograd.grad(tda, [ta, tb], retain_graph=True)
                    + torch.autograd.grad(tdb, [ta, tb])]
        assert all(close(x, y) for x, y in zip(second, expected)), (second, expected)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(programs())
def test_random_programs_second_derivatives_match_torch(program):
    """Hessians of generated programs (reuse, constants, every op) equal PyTorch's, 1e-9 relative."""
    inputs, steps = program
    _check_tame(inputs, steps)
    leaves = [Value(x) for x in inputs]
    _, root = run_program(steps, leaves)
    first = grad(root, leaves, create_graph=True)
    ours = [[g.data for g in grad(d, leaves)] for d in first]
    tensors = [t(x) for x in inputs]
    _, troot = run_program(steps, tensors)
    tfirst = torch.autograd.grad(troot, tensors, create_graph=True, allow_unused=True)
    theirs = []
    for d in tfirst:
        if d is None or not d.requires_grad:
            theirs.append([0.0] * len(tensors))
            continue
        row = torch.autograd.grad(d, tensors, retain_graph=True, allow_unused=True)
        theirs.append([0.0 if g is None else g.item() for g in row])
    scale = 1 + max(abs(x) for row in theirs for x in row)
    for our_row, their_row in zip(ours, theirs):
        for a, b in zip(our_row, their_row):
            assert close(a, b, rel=1e-9, abs_=1e-10 * scale), (ours, theirs)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(programs())
def test_random_programs_second_derivatives_match_finite_differences(program):
    """gradcheck(order=2) passes on generated programs: backward-of-backward equals nudging the gradient."""
    inputs, steps = program
    nodes = _check_tame(inputs, steps)
    scale = 1 + sum(abs(n.data) for n in nodes)
    report = gradcheck(lambda *xs: run_program(steps, xs)[1], inputs, eps=1e-5, rtol=1e-4,
                       atol=1e-6 * scale, order=2)
    assert report, str(report)


def test_gradcheck_order_two_catches_a_wrong_second_derivative():
    """A rule whose first derivative is right but not differentiable as written fails order=2 only."""
    before = set(chainrule.engine.PRIMITIVES)
    try:
        # The slope of cube is right in value, but written from out.data, so grad-of-grad loses a term.
        cube = chainrule.primitive("cube_wrong2", lambda m, a: a * a * a,
                                   lambda m, g, out, a: (g * 3 * (out.data if hasattr(out, "data") else out)
                                                         / (a.data if hasattr(a, "data") else a),))
        assert gradcheck(lambda x: cube(x), [0.7])
        assert not gradcheck(lambda x: cube(x), [0.7], order=2)
    finally:
        for name in set(chainrule.engine.PRIMITIVES) - before:
            del chainrule.engine.PRIMITIVES[name]


def test_hessian_vector_product_of_an_mlp_loss_matches_torch():
    """H v for a small MLP's loss (grad of <grad, v>) equals PyTorch's double backward."""
    random.seed(4)
    model = MLP(3, [4, 2], activation="tanh")
    params = model.parameters()
    x, target = [0.5, -1.2, 2.0], [0.3, -0.4]
    out = model(x)
    loss = sum((o - y) ** 2 for o, y in zip(out, target))
    v = [math.sin(i + 1.0) for i in range(len(params))]
    grads = grad(loss, params, create_graph=True)
    hv = grad(sum(g * vi for g, vi in zip(grads, v)), params)

    tp = [t(p.data) for p in params]
    k, h = 0, torch.tensor(x, dtype=torch.float64)
    for layer in model.layers:
        n_out, n_in = len(layer.neurons), layer.nin
        W = torch.stack([torch.stack(tp[k + j * (n_in + 1): k + j * (n_in + 1) + n_in]) for j in range(n_out)])
        bias = torch.stack([tp[k + j * (n_in + 1) + n_in] for j in range(n_out)])
        h = torch.tanh(W @ h + bias)
        k += n_out * (n_in + 1)
    tloss = ((h - torch.tensor(target, dtype=torch.float64)) ** 2).sum()
    tg = torch.autograd.grad(tloss, tp, create_graph=True)
    thv = torch.autograd.grad(sum(g * vi for g, vi in zip(tg, v)), tp)
    assert loss.data == pytest.approx(tloss.item(), rel=1e-12)
    assert np.allclose([g.data for g in hv], [g.item() for g in thv], rtol=1e-9, atol=1e-12)


def test_grad_touches_no_grad_attribute():
    """grad() leaves every .grad as it was, in either mode."""
    a, b = Value(1.5), Value(-0.5)
    a.grad, b.grad = 7.0, -2.0
    y = (a * b).tanh() + a ** 2
    inner = [n for n in chainrule.engine.topological_order(y)]
    before = [n.grad for n in inner]
    ga, gb = grad(y, [a, b])
    grad(grad(y, [a], create_graph=True)[0], [a, b])
    assert [n.grad for n in inner] == before
    assert ga.data == pytest.approx((1 - math.tanh(-0.75) ** 2) * -0.5 + 3.0, rel=1e-12)
    assert ga._prev == () and gb._prev == ()     # constants when create_graph=False


def test_unused_inputs_get_zero():
    """An input the output does not depend on gets 0 (a constant)."""
    a, b = Value(2.0), Value(3.0)
    assert [g.data for g in grad(a * a, [a, b])] == [4.0, 0.0]


def test_backward_create_graph_fills_leaves_with_values():
    """backward(create_graph=True): leaves' .grad are Values whose own backward gives second derivatives."""
    x = Value(0.4)
    y = (x * 3).tanh()
    y.backward(create_graph=True)
    assert isinstance(x.grad, Value)
    g1 = x.grad.data
    expected = 3 * (1 - math.tanh(1.2) ** 2)
    assert g1 == pytest.approx(expected, rel=1e-12)
    (d2,) = grad(x.grad, [x])
    assert d2.data == pytest.approx(-18 * math.tanh(1.2) * (1 - math.tanh(1.2) ** 2), rel=1e-10)
    assert f"{x.grad:.4f}" == f"{g1:.4f}"      # a Value grad still prints as a number


def test_a_deep_chain_differentiates_twice_without_recursion():
    """A 100,000-deep chain: first and second derivatives with no recursion limit hit."""
    x = Value(1.0)
    y = x
    for _ in range(100_000):
        y = y * 1.0 + 0.0
    y = y * y
    (dy,) = grad(y, [x], create_graph=True)
    (d2y,) = grad(dy, [x])
    assert (dy.data, d2y.data) == (2.0, 2.0)


def test_closure_ops_are_refused_with_a_way_out():
    """A lecture closure op in the graph: grad() says to make it a table rule."""
    x = Value(0.5)
    out = Value(x.data ** 2, (x,), "square")

    def _backward():
        x.grad += 2 * x.data * out.grad
    out._backward = _backward
    with pytest.raises(NotImplementedError, match=r"square.*closure.*chainrule.primitive"):
        grad(out, [x], create_graph=True)
    with pytest.raises(NotImplementedError, match="create_graph"):
        out.backward(create_graph=True)


def test_grad_argument_errors_are_clear():
    """A non-Value output or inputs that are not a list of Values are one-line TypeErrors."""
    x = Value(1.0)
    with pytest.raises(TypeError, match="needs a Value"):
        grad(3.0, [x])
    with pytest.raises(TypeError, match="list of Values"):
        grad(x * 2, x)
    with pytest.raises(TypeError, match=r"inputs\[0\]"):
        grad(x * 2, [1.0])


def test_a_gradient_computed_with_create_graph_can_be_compiled():
    """compile() of a function that returns a gradient (create_graph=True) replays like eager."""
    w = Value(0.7)

    def slope(x):
        y = (w * x).tanh() * x + (w * x).relu()
        return grad(y, [w], create_graph=True)[0]

    f = chainrule.compile(slope)
    f(0.3)
    for x0 in (0.3, -1.2, 2.0):
        w.grad = 0.0
        out = f(x0)
        out.backward()
        got = (out.data, w.grad)
        w.grad = 0.0
        eager = slope(Value(x0))
        eager.backward()
        assert got == pytest.approx((eager.data, w.grad), rel=1e-12, abs=1e-14)


@pytest.mark.parametrize("op", sorted(OPS))
def test_every_program_op_has_a_second_derivative(op):
    """Each op of the random-program table differentiates twice (mixed partials of two inputs)."""
    a, b = Value(0.7), Value(-0.4)
    y = OPS[op](a, b, 1.3)
    first = grad(y, [a, b], create_graph=True)
    for d in first:
        assert all(math.isfinite(g.data) for g in grad(d, [a, b]))


# --- found by an adversarial pass --------------------------------------------------------------------

@pytest.mark.parametrize(("name", "ours", "theirs"), [
    ("exp(x**2)", lambda x: (x ** 2).exp(), lambda x: torch.exp(x ** 2)),
    ("x**1", lambda x: x ** 1, lambda x: x ** 1),
    ("exp(x**1.0)", lambda x: (x ** 1.0).exp(), lambda x: torch.exp(x ** 1.0)),
    ("x**3", lambda x: x ** 3, lambda x: x ** 3),
])
def test_fourth_derivatives_of_constant_powers_at_zero(name, ours, theirs):
    """Through x ** k at x = 0, every order matches PyTorch (no 0 * inf = nan from a switched-off branch)."""
    assert our_derivatives(ours, 0.0, 4) == pytest.approx(torch_derivatives(theirs, 0.0, 4), abs=1e-12)


def test_create_graph_inside_no_grad_still_builds_the_graph():
    """grad(..., create_graph=True) under no_grad() records the backward graph, as torch does."""
    x = Value(3.0)
    y = x ** 3
    with chainrule.no_grad():
        (dy,) = grad(y, [x], create_graph=True)
    assert grad(dy, [x])[0].data == 18.0


def test_a_rule_that_turns_values_into_floats_is_refused_under_create_graph():
    """math.cos(a) inside a rule would silently cut the second derivative: it is a named error instead."""
    before = set(chainrule.engine.PRIMITIVES)
    try:
        sin = chainrule.primitive("sin_math", lambda m, a: math.sin(a), lambda m, g, out, a: (g * math.cos(a),))
        x = Value(0.5)
        assert grad(sin(x), [x])[0].data == pytest.approx(math.cos(0.5))
        with pytest.raises(TypeError, match="plain number.*namespace m"):
            grad(sin(x), [x], create_graph=True)
        leaky = chainrule.primitive("leaky_cmp", lambda m, a: m.where(a > 0, a, 0.01 * a),
                                    lambda m, g, out, a: (m.where(a > 0, g, 0.01 * g),))
        with pytest.raises(TypeError, match=r"leaky_cmp.*m\.le"):
            grad(leaky(x), [x], create_graph=True)
    finally:
        for name in set(chainrule.engine.PRIMITIVES) - before:
            del chainrule.engine.PRIMITIVES[name]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(programs())
def test_random_programs_third_derivatives_match_torch(program):
    """Third derivatives of generated programs by the first input (grad of grad of grad) equal PyTorch's."""
    inputs, steps = program
    _check_tame(inputs, steps)
    leaves = [Value(x) for x in inputs]
    _, root = run_program(steps, leaves)
    tensors = [t(x) for x in inputs]
    _, troot = run_program(steps, tensors)
    ours, theirs, y, ty = [], [], root, troot
    for _ in range(3):
        (y,) = grad(y, [leaves[0]], create_graph=True)
        ours.append(y.data)
        if ty is not None and ty.requires_grad:
            (ty,) = torch.autograd.grad(ty, [tensors[0]], create_graph=True, allow_unused=True)
        else:
            ty = None
        theirs.append(0.0 if ty is None else ty.item())
    scale = 1 + max(abs(x) for x in theirs)
    assert all(close(a, b, rel=1e-9, abs_=1e-10 * scale) for a, b in zip(ours, theirs)), (ours, theirs)
