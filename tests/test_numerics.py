"""The engine's numeric rules: exact division, nan/inf policy, edge derivatives, hand-made nodes, odd data.

The policy (engine.py's docstring and docs/numerics.md): a Value holds any float; IEEE arithmetic
applies; an op raises an error naming itself only where a *finite* input has no finite real result;
local derivatives follow PyTorch's formulas, and relu's backward selects, so a switched-off path
passes exactly 0 even when nan arrives there.
"""

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chainrule import Value, draw_dot


def t(x):
    return torch.tensor(float(x), dtype=torch.float64, requires_grad=True)


def same(a: float, b: float, rel: float = 1e-12, abs_: float = 1e-300) -> bool:
    """Equal as PyTorch float64 results are: nan matches nan, infinities match by sign, else close."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return a == b or math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


def tgrad(x) -> float:
    return 0.0 if x.grad is None else x.grad.item()


# --- 8. division is a primitive and exact ------------------------------------------------------------

def test_division_is_the_float_division():
    """``a / b`` is Python's float division, not ``a * b**-1``: the cases that were off or raised."""
    assert (Value(49.0) / 49).data == 1.0
    assert (Value(-2.0) ** (Value(49.0) / 49)).data == -2.0
    assert (Value(0.0) / 5e-324).data == 0.0
    assert (1 / Value(3.0)).data == 1 / 3
    assert (Value(6.0) / 4)._op == "/"


@settings(max_examples=300, deadline=None)
@given(st.floats(-1e300, 1e300), st.floats(-1e300, 1e300).filter(lambda b: abs(b) > 1e-300))
def test_division_matches_python_and_torch_bit_for_bit(a, b):
    """Random divisions give Python's quotient exactly and PyTorch's gradients to both sides."""
    va, vb = Value(a), Value(b)
    out = va / vb
    assert out.data == a / b
    out.backward()
    ta, tb = t(a), t(b)
    (ta / tb).backward()
    assert same(va.grad, tgrad(ta)) and same(vb.grad, tgrad(tb))


def test_division_by_zero_names_the_division():
    """``x / 0`` raises ZeroDivisionError showing both numbers."""
    with pytest.raises(ZeroDivisionError, match=r"division by zero: 1.0 / 0.0"):
        Value(1.0) / 0
    with pytest.raises(ZeroDivisionError, match="division by zero"):
        2.0 / Value(-0.0)


# --- 9. nan does not leak through a switched-off path ------------------------------------------------

def test_nan_does_not_leak_through_an_inactive_relu():
    """``b ** (relu(a) + 1)`` with a = -1, b = -2: the exponent's gradient is nan, relu is off, a.grad is 0."""
    a, b = Value(-1.0), Value(-2.0)
    (b ** (a.relu() + 1)).backward()
    ta, tb = t(-1.0), t(-2.0)
    (tb ** (torch.relu(ta) + 1)).backward()
    assert a.grad == tgrad(ta) == 0.0
    assert same(b.grad, tgrad(tb))


def test_relu_of_nan_is_nan_as_in_pytorch():
    """relu keeps nan (forward) and passes the gradient at nan (its off-switch is ``a <= 0``)."""
    x = Value(math.nan)
    y = x.relu()
    y.backward()
    tx = t(math.nan)
    torch.relu(tx).backward()
    assert math.isnan(y.data) and same(x.grad, tgrad(tx))


# --- 10. edge derivatives follow PyTorch ---------------------------------------------------------------

@pytest.mark.parametrize(("make", "torch_make"), [
    (lambda x: x ** 0, lambda x: x ** 0),
    (lambda x: x ** Value(0.0), lambda x: x ** torch.tensor(0.0, dtype=torch.float64)),
    (lambda x: x.sqrt(), torch.sqrt),
    (lambda x: x ** 0.5, lambda x: x ** 0.5),
    (lambda x: x ** 2, lambda x: x ** 2),
    (lambda x: x ** 1.5, lambda x: x ** 1.5),
    (lambda x: Value(0.0) ** x, lambda x: torch.tensor(0.0, dtype=torch.float64) ** x),
], ids=["0**0", "0**Value(0)", "sqrt(0)", "0**0.5", "0**2", "0**1.5", "0**x"])
def test_edge_derivatives_at_zero_match_pytorch(make, torch_make):
    """At 0, powers and sqrt give PyTorch's value and gradient (1 with gradient 0 for 0**0; inf for sqrt)."""
    x = Value(0.0)
    y = make(x)
    y.backward()
    tx = t(0.0)
    ty = torch_make(tx)
    ty.backward()
    assert same(y.data, ty.item()) and same(x.grad, tgrad(tx))


def test_value_zero_pow_value_zero_sends_zero_to_both():
    """``Value(0) ** Value(0)`` is 1, and both the base and the exponent get gradient 0, as in PyTorch."""
    a, b = Value(0.0), Value(0.0)
    out = a ** b
    out.backward()
    assert (out.data, a.grad, b.grad) == (1.0, 0.0, 0.0)


@pytest.mark.parametrize(("make", "error", "match"), [
    (lambda: Value(-1.0).sqrt(), ValueError, r"sqrt\(-1.0\)"),
    (lambda: Value(0.0) ** -1, ZeroDivisionError, r"pow: 0.0 \*\* -1.0"),
    (lambda: Value(-8.0) ** (1 / 3), ValueError, "not a real number"),
    (lambda: Value(800.0).exp(), OverflowError, r"exp\(800.0\)"),
    (lambda: Value(0.0).log(), ValueError, r"log\(0.0\)"),
])
def test_forward_errors_name_the_op_the_user_wrote(make, error, match):
    """Where a finite input has no finite real result, the error names the op (sqrt says sqrt, not pow)."""
    with pytest.raises(error, match=match):
        make()


# --- 11. hand-made nodes ---------------------------------------------------------------------------

@pytest.mark.parametrize(("children", "op", "match"), [
    (1, "*", "op '\\*' takes 2 inputs, got 1"),
    (3, "+", "op '\\+' takes 2 inputs, got 3"),
    (2, "tanh", "op 'tanh' takes 1 input, got 2"),
    (1, "**k", "needs its constant exponent"),
])
def test_hand_made_nodes_check_arity_where_made(children, op, match):
    """``Value(5.0, (a,), "*")`` fails where the node is made, naming the op and the input count."""
    inputs = tuple(Value(float(i)) for i in range(children))
    with pytest.raises(ValueError, match=match):
        Value(5.0, inputs, op)


def test_hand_made_nodes_with_the_right_arity_backpropagate_and_draw():
    """A hand-made ``*`` node with two inputs uses the table rule and draws."""
    a, b = Value(2.0, label="a"), Value(3.0, label="b")
    c = Value(6.0, (a, b), "*")
    c.backward()
    assert (a.grad, b.grad) == (3.0, 2.0)
    assert "*" in draw_dot(c).source


def test_hand_made_children_must_be_values():
    """Children that are not Values are refused with the type named."""
    with pytest.raises(TypeError, match="takes Values, got float"):
        Value(5.0, (1.0, 2.0), "+")


# --- 12. non-finite data -----------------------------------------------------------------------------

def test_non_finite_data_is_accepted_and_follows_ieee():
    """nan and inf are numbers like any float: ops follow IEEE (and PyTorch), no error for them."""
    assert math.isnan(Value(math.nan).data) and Value(math.inf).data == math.inf
    assert (Value(math.inf) + 1).data == math.inf
    assert Value(math.inf).exp().data == math.inf and Value(-math.inf).exp().data == 0.0
    assert Value(math.inf).tanh().data == 1.0 and math.isnan(Value(math.nan).tanh().data)
    assert math.isnan((Value(math.inf) * 0).data)


def test_integers_too_large_for_a_float_are_one_clear_line():
    """``Value(10**400)`` says the integer is too large, with its size, instead of Python's message."""
    with pytest.raises(OverflowError, match=r"integer of about 401 digits, too large for a float"):
        Value(10 ** 400)


def test_signed_zero_slopes_are_those_at_zero():
    """chainrule does not tell -0.0 from 0.0 in a power's slope: ``x ** 0.5`` at -0.0 has slope +inf."""
    for x0 in (0.0, -0.0):
        x = Value(x0)
        (x ** 0.5).backward()
        assert x.grad == math.inf


# --- special values against PyTorch on generated programs ---------------------------------------------

# -0.0 is left out: PyTorch computes some powers of it through sqrt and 1/x, which give a signed
# infinite slope at -0.0; chainrule's slopes there are those at +0.0 (test_signed_zero_slopes_are_those_at_zero).
SPECIAL = [0.0, 1.0, -1.0, 2.0, -2.0, 0.5, 1e-300, 1e300, 5e-324, math.inf, -math.inf, math.nan]

# Ops on two nodes a, b; each written so that Values and tensors share the syntax.
EDGE_OPS = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "**": lambda a, b: a ** b,
    "**2": lambda a, b: a ** 2,
    "**-1": lambda a, b: a ** -1,
    # No fractional constant: PyTorch computes tensor ** 0.5 through sqrt (nan at -inf) and other constant
    # powers' slopes through the same shortcuts, while tensor ** tensor follows C99 (inf at -inf); chainrule
    # follows C99 and Python throughout, which "**" checks against PyTorch's tensor ** tensor.
    "**3": lambda a, b: a ** 3,
    "**0": lambda a, b: a ** 0,
    "relu": lambda a, b: a.relu() if isinstance(a, Value) else torch.relu(a),
    "tanh": lambda a, b: a.tanh() if isinstance(a, Value) else torch.tanh(a),
    "sigmoid": lambda a, b: a.sigmoid() if isinstance(a, Value) else torch.sigmoid(a),
    "exp": lambda a, b: a.exp() if isinstance(a, Value) else torch.exp(a),
    "log": lambda a, b: a.log() if isinstance(a, Value) else torch.log(a),
    "sqrt": lambda a, b: a.sqrt() if isinstance(a, Value) else torch.sqrt(a),
}

BINARY_EDGE = {"+", "-", "*", "/", "**"}


@st.composite
def edge_programs(draw):
    inputs = draw(st.lists(st.sampled_from(SPECIAL) | st.floats(-3, 3), min_size=1, max_size=3))
    steps = [(draw(st.sampled_from(sorted(EDGE_OPS))), draw(st.integers(0, len(inputs) + k - 1)),
              draw(st.integers(0, len(inputs) + k - 1))) for k in range(draw(st.integers(1, 6)))]
    return inputs, steps


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edge_programs())
def test_programs_on_special_values_match_pytorch(program):
    """nan, inf, 0, -0 and tiny or huge numbers through every op: PyTorch's values and gradients, or a
    named error exactly where a finite input gives PyTorch a non-finite result."""
    inputs, steps = program
    leaves, tensors = [Value(x) for x in inputs], [t(x) for x in inputs]
    nodes, tnodes = list(leaves), list(tensors)
    for op, i, j in steps:
        tout = EDGE_OPS[op](tnodes[i], tnodes[j])
        try:
            out = EDGE_OPS[op](nodes[i], nodes[j])
        except (ArithmeticError, ValueError) as e:
            used = (nodes[i], nodes[j]) if op in BINARY_EDGE else (nodes[i],)
            finite_in = all(math.isfinite(n.data) for n in used)
            assert finite_in and not math.isfinite(tout.item()), f"{op} raised {e!r}, PyTorch gave {tout.item()}"
            return
        assert same(out.data, tout.item()), (op, out.data, tout.item())
        nodes.append(out)
        tnodes.append(tout)
    root, troot = nodes[-1], tnodes[-1]
    root.backward()
    troot.backward()
    # Sums of gradient terms may round differently in another order: allow that much, no more.
    scale = max([abs(n.data) for n in nodes if math.isfinite(n.data)] + [1.0])
    # Near overflow the two libraries' formulas round differently (PyTorch takes x ** -2 as 1 / (x*x),
    # which overflows first), so one may give inf where the other gives nan: both non-finite agree there.
    extreme = any(0 < abs(n.data) < 1e-150 or 1e150 < abs(n.data) < math.inf for n in nodes)
    for leaf, tensor in zip(leaves, tensors):
        a, b = leaf.grad, tgrad(tensor)
        if extreme and not math.isfinite(a) and not math.isfinite(b):
            continue
        assert same(a, b, rel=1e-9, abs_=1e-12 * min(scale, 1e4) ** 3), (a, b)
