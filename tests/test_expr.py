"""The safe expression language: grammar, errors with positions, fuzzing, and Values it builds."""

import math
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chainrule import Value
from chainrule.expr import (FUNCTIONS, Binary, Call, ExpressionError, Name, Neg, Num, build_expression,
                            parse_expression)

torch = pytest.importorskip("torch")


# --- Grammar ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, grouped", [
    ("-x**2", "-(x**2)"),                 # ** binds tighter than unary minus, as in Python
    ("2**-x", "2**(-x)"),
    ("2**-x**2", "2**(-(x**2))"),
    ("x**y**z", "x**(y**z)"),             # ** is right-associative
    ("a - b - c", "(a - b) - c"),         # the others are left-associative
    ("a / b / c", "(a / b) / c"),
    ("a + b * c", "a + (b * c)"),
    ("-a * b", "(-a) * b"),
    ("a * b ** c", "a * (b ** c)"),
    ("tanh(a) * b", "(tanh(a)) * b"),
    ("((((a))))", "a"),
])
def test_precedence_and_grouping(text, grouped):
    """Each expression groups as its explicitly parenthesised twin does (Python's rules)."""
    assert parse_expression(text) == parse_expression(grouped)


@pytest.mark.parametrize("text, python_value", [
    ("-3**2", -3.0**2),
    ("(-3)**2", (-3.0)**2),
    ("2**-1", 2.0**-1),
    ("2**3**2", 2.0**3.0**2.0),
    ("7 - 4 - 2", 7.0 - 4.0 - 2.0),
    ("8 / 4 / 2", 8.0 / 4.0 / 2.0),
    ("1 + 2 * 3 - 4 / 8", 1.0 + 2.0 * 3.0 - 4.0 / 8.0),
    ("--2", 2.0),
])
def test_values_match_python_arithmetic(text, python_value):
    """Constant expressions compute what Python's own operators compute for the same text."""
    root, leaves = build_expression(text, {})
    assert root.data == python_value and leaves == {}


@pytest.mark.parametrize("text, value", [
    ("3", 3.0), ("0.5", 0.5), (".5", 0.5), ("2.", 2.0), ("1e-3", 1e-3), ("1E+2", 100.0), ("2.5e1", 25.0),
])
def test_number_forms(text, value):
    """Integers, decimals, a leading or trailing point and exponents are numbers."""
    tree = parse_expression(text)
    assert isinstance(tree, Num) and tree.value == value


def test_tree_shape_and_positions():
    """The tree has the documented node types, and each node records where it starts."""
    tree = parse_expression("tanh(x1*w1) - y")
    assert isinstance(tree, Binary) and tree.op == "-" and tree.position == 12
    call = tree.left
    assert isinstance(call, Call) and call.func == "tanh" and call.position == 0
    assert isinstance(call.arg, Binary) and call.arg.op == "*" and call.arg.position == 7
    assert isinstance(call.arg.left, Name) and call.arg.left.name == "x1" and call.arg.left.position == 5
    assert isinstance(parse_expression("-x"), Neg)


def test_negative_literal_is_one_number():
    """A minus directly on a literal makes one negative number, not a negation node."""
    assert parse_expression("-3") == Num(-3.0, "-3")
    assert parse_expression("x * -2.5").right.value == -2.5


def test_str_writes_back_with_fewest_parentheses():
    """str() gives text that keeps the grouping and drops redundant parentheses."""
    assert str(parse_expression("((x1*w1)) + (b)")) == "x1*w1 + b"
    assert str(parse_expression("(a-b)-(c-d)")) == "a - b - (c - d)"
    assert str(parse_expression("(-2)**2 + -(a*b)")) == "(-2)**2 + -(a*b)"
    assert repr(parse_expression("x+1")) == "parse_expression('x + 1')"


def test_every_function_parses_and_computes():
    """Each listed function is callable with one argument and matches the Value method."""
    for name, method in FUNCTIONS.items():
        root, leaves = build_expression(f"{name}(x)", {"x": 0.7})
        assert root.data == method(Value(0.7)).data, name


def test_names_may_contain_digits_and_underscores():
    """Names follow [A-Za-z_][A-Za-z0-9_]*."""
    root, leaves = build_expression("_a1 * B_2", {"_a1": 2, "B_2": 5})
    assert root.data == 10.0 and list(leaves) == ["_a1", "B_2"]


# --- Errors ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, position, fragment", [
    ("tanh(x))", 7, "unexpected ')'"),
    ("x +", 3, "unexpected end of expression"),
    ("x $ y", 2, "unexpected character '$'"),
    ("x y", 2, "write * to multiply"),
    ("2(x)", 1, "write * to multiply"),
    ("(x + 1", 0, "never closed"),
    ("tanh(x", 0, "'tanh(' at position 0 is never closed"),
    ("foo(x)", 0, "unknown function 'foo'"),
    ("tanh(x, y)", 6, "tanh() takes exactly one argument"),
    ("x, y", 1, "unexpected ','"),
    ("exp + 1", 0, "is a function"),
    ("1e", 0, "malformed number"),
    ("1e999", 0, "too large"),
    ("* x", 0, "unexpected '*'"),
    ("x ** ** 2", 5, "unexpected '**'"),
    ("x = 1", 2, "unexpected character '='"),
    ("__import__('os')", 0, "unknown function '__import__'"),
])
def test_errors_name_the_position(text, position, fragment):
    """Each mistake raises ExpressionError whose message and .position point at the problem."""
    with pytest.raises(ExpressionError) as info:
        parse_expression(text)
    assert info.value.position == position
    assert fragment in info.value.message
    assert f"position {position}" in info.value.message


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_expression(text):
    """Empty or blank text is an ExpressionError saying so."""
    with pytest.raises(ExpressionError, match="empty expression"):
        parse_expression(text)


def test_unknown_function_lists_known_ones():
    """An unknown function's error names every function there is."""
    with pytest.raises(ExpressionError) as info:
        parse_expression("sin(x)")
    assert all(name in str(info.value) for name in FUNCTIONS)


def test_error_shows_a_caret_under_the_problem():
    """str(error) is the message, the text, and a caret under the offending character."""
    with pytest.raises(ExpressionError) as info:
        parse_expression("a + b)")
    message, shown, caret = str(info.value).split("\n")
    assert message == "unexpected ')' at position 5"
    assert shown.index("b)") + 1 == caret.index("^")


def test_error_in_a_long_text_shows_a_window():
    """In a very long expression the error shows a short window around the problem, caret aligned."""
    text = "x + " * 5000 + "$" + " + x" * 5000
    with pytest.raises(ExpressionError) as info:
        parse_expression(text)
    _, shown, caret = str(info.value).split("\n")
    assert len(shown) < 100 and shown[caret.index("^")] == "$"


def test_expression_error_is_a_value_error():
    """Code catching ValueError also catches expression mistakes."""
    assert issubclass(ExpressionError, ValueError)


def test_non_string_is_a_type_error():
    """Passing something other than text is a TypeError naming the type."""
    with pytest.raises(TypeError, match="int"):
        parse_expression(3)


# --- Fuzzing: only ExpressionError, never a crash ----------------------------------------------------

ALPHABET = "0123456789.eE+-*/() ,\t_xyzabtanhexplogsigmoidrelusqrt$"
GRAMMAR_PIECES = ["x", "y", "2", "0.5", "1e-3", "1e", ".", "+", "-", "*", "/", "**", "(", ")", ",",
                  "tanh(", "exp(", "log(", "relu(", "sigmoid(", "sqrt(", "abs(", "foo(", " ", "e"]


def _only_expression_errors(text):
    try:
        tree = parse_expression(text)
    except ExpressionError as exc:
        assert isinstance(exc.position, int) and 0 <= exc.position <= len(text)
        assert str(exc)
        return None
    assert str(tree)
    return tree


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_fuzz_arbitrary_text(text):
    """Any text either parses or raises ExpressionError with a position inside it."""
    _only_expression_errors(text)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(alphabet=ALPHABET, max_size=40),
                 st.lists(st.sampled_from(GRAMMAR_PIECES), max_size=25).map("".join)))
def test_fuzz_grammar_alphabet(text):
    """Near-miss expressions parse, write back to an equal tree, or raise ExpressionError; building them
    raises nothing else either."""
    tree = _only_expression_errors(text)
    if tree is None:
        return
    assert parse_expression(str(tree)) == tree
    try:
        root, _ = build_expression(text, {"x": 0.3, "y": -1.2, "z": 2.0, "e": 1.5, "a": 0.0, "b": 4.0})
    except ExpressionError:
        return
    assert isinstance(root, Value)


# --- Deep nesting: no RecursionError -----------------------------------------------------------------

DEEP = 100_000


def test_deep_parentheses():
    """100,000 nested parentheses parse to the bare name and build its leaf."""
    text = "(" * DEEP + "x" + ")" * DEEP
    assert parse_expression(text) == Name("x")
    root, leaves = build_expression(text, {"x": 2.5})
    assert root is leaves["x"] and root.data == 2.5


@pytest.mark.parametrize("count", [DEEP, DEEP + 1])
def test_deep_unary_minus(count):
    """100,000 (and 100,001) unary minuses compute the right sign and gradient."""
    root, leaves = build_expression("-" * count + "x", {"x": 3.0})
    root.backward()
    sign = -1.0 if count % 2 else 1.0
    assert root.data == sign * 3.0 and leaves["x"].grad == sign
    assert str(parse_expression("-" * count + "x")) == "-" * count + "x"


def test_deep_function_nesting_and_unclosed():
    """Deeply nested calls build; deeply unclosed parentheses are an ExpressionError."""
    depth = 20_000
    root, leaves = build_expression("relu(" * depth + "x" + ")" * depth, {"x": 1.5})
    root.backward()
    assert root.data == 1.5 and leaves["x"].grad == 1.0
    with pytest.raises(ExpressionError):
        parse_expression("(" * DEEP + "x")
    with pytest.raises(ExpressionError):
        parse_expression("tanh(" * DEEP)


def test_long_right_associative_power_chain():
    """A 20,000-long x**x**...**x chain parses and compares without recursion."""
    text = "x" + "**x" * 20_000
    tree = parse_expression(text)
    assert tree == parse_expression(str(tree)) and str(tree) == text


def test_recursion_limit_is_not_the_bound():
    """Nesting far beyond Python's recursion limit works."""
    depth = 10 * sys.getrecursionlimit()
    root, _ = build_expression("(" * depth + "-(" * depth + "x" + ")" * (2 * depth), {"x": 1.0})
    assert root.data == 1.0


# --- Building Values ------------------------------------------------------------------------------

NEURON = "tanh(x1*w1 + x2*w2 + b)"
NEURON_AT = {"x1": 2.0, "x2": 0.0, "w1": -3.0, "w2": 1.0, "b": 6.8813735870195432}


def test_neuron_matches_hand_built_values():
    """The lecture's neuron from text equals the neuron built by hand, value and every gradient."""
    root, leaves = build_expression(NEURON, NEURON_AT)
    root.backward()
    x1, x2, w1, w2, b = (Value(NEURON_AT[n], label=n) for n in ["x1", "x2", "w1", "w2", "b"])
    o = (x1 * w1 + x2 * w2 + b).tanh()
    o.backward()
    assert root.data == o.data
    for name, hand in zip(["x1", "x2", "w1", "w2", "b"], [x1, x2, w1, w2, b]):
        assert leaves[name].grad == hand.grad, name


def test_neuron_matches_torch():
    """Gradients of the neuron and of an expression using every function match PyTorch float64."""
    cases = [
        (NEURON, NEURON_AT,
         lambda t: torch.tanh(t["x1"] * t["w1"] + t["x2"] * t["w2"] + t["b"])),
        ("sigmoid(a) * exp(b/2) - log(c) + relu(a - b) ** 2 + sqrt(abs(b)) - a**c / -b",
         {"a": 1.3, "b": -0.4, "c": 2.2},
         lambda t: (torch.sigmoid(t["a"]) * torch.exp(t["b"] / 2) - torch.log(t["c"])
                    + torch.relu(t["a"] - t["b"]) ** 2 + torch.sqrt(torch.abs(t["b"]))
                    - t["a"] ** t["c"] / -t["b"])),
    ]
    for text, at, torch_fn in cases:
        root, leaves = build_expression(text, at)
        root.backward()
        t = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in at.items()}
        out = torch_fn(t)
        out.backward()
        assert math.isclose(root.data, out.item(), rel_tol=1e-12)
        for name in at:
            assert math.isclose(leaves[name].grad, t[name].grad.item(), rel_tol=1e-10, abs_tol=1e-12), name


def test_name_used_twice_is_one_value():
    """A name used twice is one leaf; its gradient sums both uses (d(x*x + x)/dx = 2x + 1)."""
    root, leaves = build_expression("x*x + x", {"x": 3.0})
    root.backward()
    assert list(leaves) == ["x"] and leaves["x"].grad == 7.0
    assert sum(1 for v in root._prev[0]._prev if v is leaves["x"]) == 2


def test_given_values_are_used_as_leaves():
    """A Value passed in is the leaf itself, so backward fills in the caller's object."""
    w = Value(-3.0, label="w")
    root, leaves = build_expression("w * 2", {"w": w})
    root.backward()
    assert leaves["w"] is w and w.grad == 2.0


def test_labels():
    """Leaves carry their names, short interior nodes their text, the root 'out' (unless a leaf)."""
    root, leaves = build_expression("x1*w1 + b", {"x1": 1, "w1": 2, "b": 3})
    assert root.label == "out" and leaves["x1"].label == "x1"
    assert root._prev[0].label == "x1*w1"
    leaf_root, _ = build_expression("(x)", {"x": 1})
    assert leaf_root.label == "x"
    long_root, _ = build_expression("a1234567 * b1234567 + c1234567 * d1234567", dict.fromkeys(
        ["a1234567", "b1234567", "c1234567", "d1234567"], 1.0))
    assert long_root._prev[0].label == "a1234567*b1234567" and long_root.label == "out"


def test_literal_exponent_is_a_constant_parameter():
    """x**2 is one '**2' node as in the lecture; a Value exponent gets a gradient of its own."""
    root, _ = build_expression("x**2", {"x": 3.0})
    assert root._op == "**2" and len(root._prev) == 1
    root, leaves = build_expression("x**y", {"x": 2.0, "y": 3.0})
    root.backward()
    assert root._op == "**" and math.isclose(leaves["y"].grad, 8.0 * math.log(2.0))


def test_missing_names_are_listed():
    """Every name without a value is listed; the position is the first one's."""
    with pytest.raises(ExpressionError) as info:
        build_expression("a + q * r + q", {"a": 1.0})
    assert info.value.position == 4
    assert "'q'" in info.value.message and "'r'" in info.value.message


def test_extra_values_are_ignored():
    """Values for names the expression does not use are not leaves."""
    _, leaves = build_expression("a + 1", {"a": 1.0, "unused": 2.0})
    assert list(leaves) == ["a"]


@pytest.mark.parametrize("text, at, position, fragment", [
    ("1 + log(x)", {"x": -1.0}, 4, "log"),
    ("x / (y - y)", {"x": 1.0, "y": 2.0}, 2, "division by zero"),
    ("2 * exp(x)", {"x": 1000.0}, 4, "exp"),
])
def test_math_errors_name_the_position(text, at, position, fragment):
    """A math error while building (log of a negative, division by zero, overflow) names the op's position."""
    with pytest.raises(ExpressionError) as info:
        build_expression(text, at)
    assert info.value.position == position and fragment in info.value.message


def test_bad_value_type_is_a_type_error():
    """A value that is not a number is the engine's TypeError naming the type."""
    with pytest.raises(TypeError, match="str"):
        build_expression("x + 1", {"x": "2"})


# --- Property: text and hand-built Values agree ----------------------------------------------------

def _literal(text):
    return st.just((text, lambda env: Value(float(text)), text))


_LEAVES = st.one_of(
    st.sampled_from(["x", "y", "z"]).map(lambda n: (n, lambda env: env[n], None)),
    st.sampled_from(["0.5", "2", "3", "1.5e-1"]).flatmap(_literal),
)


def _neg(t):
    text, build, lit = t
    # The parser folds a minus on a plain literal into a negative literal; mirror that.
    folded = "-" + lit if lit is not None and not lit.startswith("-") else None
    return ("-(" + text + ")", lambda env: -build(env), folded)


def _binary(op):
    def make(pair):
        (lt, lb, _), (rt, rb, rlit) = pair
        text = f"({lt}) {op} ({rt})"
        if op == "+":
            return text, lambda env: lb(env) + rb(env), None
        if op == "-":
            return text, lambda env: lb(env) - rb(env), None
        if op == "*":
            return text, lambda env: lb(env) * rb(env), None
        if op == "/":
            return text, lambda env: lb(env) / rb(env), None
        if rlit is not None:        # a literal exponent stays a constant: x ** 2.0
            return text, lambda env: lb(env) ** float(rlit), None
        return text, lambda env: lb(env) ** rb(env), None
    return make


def _call(name):
    def make(t):
        text, build, _ = t
        return f"{name}({text})", lambda env: FUNCTIONS[name](build(env)), None
    return make


_EXPRESSIONS = st.recursive(
    _LEAVES,
    lambda inner: st.one_of(
        inner.map(_neg),
        *[st.tuples(inner, inner).map(_binary(op)) for op in ["+", "-", "*", "/", "**"]],
        *[inner.map(_call(name)) for name in FUNCTIONS],
    ),
    max_leaves=12,
)


def _same(a, b):
    return a == b or (math.isnan(a) and math.isnan(b))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_EXPRESSIONS, st.floats(-3, 3), st.floats(-3, 3), st.floats(0.1, 3))
def test_text_equals_hand_built(expression, x, y, z):
    """For random expressions, building from text gives exactly the value and gradients of the same
    computation written with Values (or both fail)."""
    text, build, _ = expression
    at = {"x": x, "y": y, "z": z}
    hand_leaves = {name: Value(v, label=name) for name, v in at.items()}
    try:
        hand = build(hand_leaves)
    except (ArithmeticError, ValueError):
        with pytest.raises(ExpressionError):
            build_expression(text, at)
        return
    root, leaves = build_expression(text, at)
    assert _same(root.data, hand.data)
    errors = []
    for graph in (hand, root):
        try:
            graph.backward()
            errors.append(None)
        except (ArithmeticError, ValueError) as exc:
            errors.append(type(exc))
    assert errors[0] == errors[1]
    if errors[0] is None:
        for name, leaf in leaves.items():
            assert _same(leaf.grad, hand_leaves[name].grad), name
