"""The lecture's own way of writing ops (closures), table rules added with ``primitive``, grad mode per thread.

The closure-style methods below are the ones learners type in the lecture (see
../shared/lecture-notes): each builds ``out = Value(..., (self,), op)``, defines ``_backward`` and
assigns it to ``out._backward``. They run here on chainrule's own ``Value``, monkeypatched onto the
class and on a subclass, and must give the lecture's numbers.
"""

import gc
import io
import math
import threading

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import chainrule
from chainrule import MLP, Value, gradcheck, no_grad, primitive
from chainrule.engine import enable_grad, is_grad_enabled, rule_of, topological_order, track_created  # noqa: F401
from chainrule.primitives import PRIMITIVES


# --- the lecture's methods, as typed --------------------------------------------------------------

def lecture_tanh(self):
    x = self.data
    t = (math.exp(2 * x) - 1) / (math.exp(2 * x) + 1)
    out = Value(t, (self,), "tanh")

    def _backward():
        self.grad += (1 - t ** 2) * out.grad
    out._backward = _backward
    return out


def lecture_exp(self):
    x = self.data
    out = Value(math.exp(x), (self,), "exp")

    def _backward():
        self.grad += out.data * out.grad
    out._backward = _backward
    return out


def lecture_pow(self, other):
    assert isinstance(other, (int, float)), "only supporting int/float powers for now"
    out = Value(self.data ** other, (self,), f"**{other}")

    def _backward():
        self.grad += other * (self.data ** (other - 1)) * out.grad
    out._backward = _backward
    return out


def lecture_truediv(self, other):     # self / other
    return self * other ** -1


@pytest.fixture
def lecture_value(monkeypatch):
    """chainrule's Value with the lecture's closure methods patched on, as a learner does in a notebook."""
    monkeypatch.setattr(Value, "tanh", lecture_tanh)
    monkeypatch.setattr(Value, "exp", lecture_exp)
    monkeypatch.setattr(Value, "__pow__", lecture_pow)
    monkeypatch.setattr(Value, "__truediv__", lecture_truediv)
    return Value


def lecture_neuron(V, tanh_by_parts: bool):
    x1 = V(2.0, label="x1"); x2 = V(0.0, label="x2")
    w1 = V(-3.0, label="w1"); w2 = V(1.0, label="w2")
    b = V(6.8813735870195432, label="b")
    n = x1 * w1 + x2 * w2 + b
    if tanh_by_parts:
        e = (2 * n).exp()
        o = (e - 1) / (e + 1)
    else:
        o = n.tanh()
    return o, (x1, w1, x2, w2)


@pytest.mark.parametrize("by_parts", [False, True], ids=["tanh-closure", "exp-pow-div-closures"])
def test_lecture_neuron_with_closures_gives_the_lecture_numbers(lecture_value, by_parts):
    """The lecture's neuron, with its closure-defined tanh (or exp, pow and division), gives its numbers."""
    o, (x1, w1, x2, w2) = lecture_neuron(lecture_value, by_parts)
    o.backward()
    assert o.data == pytest.approx(0.7071067811865476, abs=1e-12)
    assert [round(v.grad, 4) for v in (x1, w1, x2, w2)] == [-1.5, 1.0, 0.5, 0.0]


def test_lecture_by_hand_calls_each_closure(lecture_value):
    """Node by node, as the lecture first does it: ``o.grad = 1.0; o._backward(); n._backward(); ...``."""
    x1 = Value(2.0); w1 = Value(-3.0); b = Value(6.8813735870195432)
    x1w1 = x1 * w1
    n = x1w1 + b
    o = n.tanh()
    o.grad = 1.0
    o._backward()
    assert round(n.grad, 4) == 0.5
    n._backward()                       # a table node: its rule runs by hand too
    assert round(x1w1.grad, 4) == 0.5 and round(b.grad, 4) == 0.5
    x1w1._backward()
    assert round(x1.grad, 4) == -1.5 and round(w1.grad, 4) == 1.0
    assert Value(1.0)._backward() is None     # a leaf's step does nothing


def test_closure_is_the_function_assigned():
    """``out._backward = fn`` keeps fn itself, so ``out._backward is fn`` as the lecture expects."""
    a = Value(2.0)
    out = Value(4.0, (a,), "square")

    def _backward():
        a.grad += 2 * a.data * out.grad
    out._backward = _backward
    assert out._backward is _backward
    out.backward()
    assert a.grad == 4.0 and out._op == "square" and out._prev == (a,)


def test_a_node_used_twice_accumulates_with_closures(lecture_value):
    """The lecture's ``+=`` fix: ``d = a*b + a`` gives 3.0 and 32.0; ``s = a + a`` gives 2.0."""
    a, b = Value(32.0), Value(2.0)
    d = a * b + a
    d.backward()
    assert (d.data, a.grad, b.grad) == (96.0, 3.0, 32.0)
    a = Value(32.0)
    (a + a).backward()
    assert a.grad == 2.0


def test_subclass_with_the_lectures_methods():
    """A learner's subclass that defines the lecture's ops as methods backpropagates through them."""
    class MyValue(Value):
        tanh = lecture_tanh
        exp = lecture_exp

        def square(self):
            out = MyValue(self.data ** 2, (self,), "**2")

            def _backward():
                self.grad += 2 * self.data * out.grad
            out._backward = _backward
            return out

    x = MyValue(3.0, label="x")
    y = (x * 2).square().tanh()      # results of built-in ops keep the subclass, so methods chain
    assert isinstance(x * 2, MyValue)
    y.backward()
    t = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    torch.tanh((t * 2) ** 2).backward()
    assert x.grad == pytest.approx(t.grad.item(), rel=1e-12, abs=1e-300)


def test_subclass_with_its_own_init_like_the_lecture():
    """A subclass whose own ``__init__`` sets ``_prev``, ``_op`` and ``_backward`` (the lecture's class body) works."""
    class LectureValue(Value):
        def __init__(self, data, _children=(), _op="", label=""):
            self.data = data
            self.grad = 0.0
            self._backward = lambda: None
            self._prev = set(_children)
            self._op = _op
            self.label = label

        def __mul__(self, other):
            other = other if isinstance(other, LectureValue) else LectureValue(other)
            out = LectureValue(self.data * other.data, (self, other), "*")

            def _backward():
                self.grad += other.data * out.grad
                other.grad += self.data * out.grad
            out._backward = _backward
            return out

    a, b = LectureValue(3.0), LectureValue(-2.0)
    c = a * b
    c.backward()
    assert (c.data, a.grad, b.grad, c._op, set(c._prev)) == (-6.0, -2.0, 3.0, "*", {a, b})


def test_closures_and_table_rules_mix_in_one_graph(lecture_value):
    """A graph mixing closure ops (patched tanh/exp/pow) with table ops (+, *, relu, log) matches PyTorch."""
    def f(x, y, lib):
        if lib == "torch":
            return torch.tanh(x * y + 1) * torch.exp(y) + torch.log(x) + torch.relu(y - 0.2) ** 3
        return (x * y + 1).tanh() * y.exp() + x.log() + (y - 0.2).relu() ** 3
    x, y = Value(0.7), Value(0.9)
    f(x, y, "chainrule").backward()
    tx = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    ty = torch.tensor(0.9, dtype=torch.float64, requires_grad=True)
    f(tx, ty, "torch").backward()
    assert x.grad == pytest.approx(tx.grad.item(), rel=1e-12)
    assert y.grad == pytest.approx(ty.grad.item(), rel=1e-12)
    assert gradcheck(lambda a, b: f(a, b, "chainrule"), [0.7, 0.9])


def test_gradcheck_works_on_closure_ops(lecture_value):
    """gradcheck passes for the lecture's correct closures."""
    assert gradcheck(lambda a, b: (a / b).tanh() + (a ** 3).exp(), [0.4, 1.3])


def test_op_without_rule_or_closure_says_how_to_add_one():
    """A hand-made op with neither a closure nor a rule names both ways to fix it."""
    x = Value(3.0)
    y = Value(9.0, (x,), "square")
    with pytest.raises(NotImplementedError, match=r"square.*out._backward = _backward.*chainrule.primitive"):
        y.backward()


def test_compile_names_closure_ops_and_says_how_to_fix(lecture_value):
    """The compiled replay refuses a closure-defined op with a named error pointing at chainrule.primitive."""
    f = chainrule.compile(lambda x: (x * 2).tanh())
    with pytest.raises(Exception, match=r"(?s)tanh.*chainrule\.primitive"):
        f(0.5)
        f(0.5)


def test_rule_of_tells_table_nodes_leaves_and_closures(lecture_value):
    """rule_of gives the table row, None for a leaf, and a NotImplementedError for a closure node."""
    x = Value(0.5)
    assert rule_of(x) is None and rule_of(x * 2) is PRIMITIVES["*"]
    with pytest.raises(NotImplementedError, match="closure"):
        rule_of(x.tanh())


# --- table rules added with chainrule.primitive ------------------------------------------------------

@pytest.fixture
def registered():
    """Names registered by a test are removed again, so tests do not see each other's rows."""
    before = set(PRIMITIVES)
    yield
    for name in set(PRIMITIVES) - before:
        del PRIMITIVES[name]


def test_registered_op_matches_torch_and_gradcheck(registered):
    """A registered op (softplus, written once against the math namespace) matches PyTorch and gradcheck."""
    softplus = primitive("softplus", lambda m, a: m.log(1 + m.exp(a)),
                         lambda m, g, out, a: (g * m.sigmoid(a),))
    for x0 in (-2.0, 0.3, 4.0):
        x = Value(x0)
        y = softplus(x * 1.5) * x
        y.backward()
        t = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
        (torch.nn.functional.softplus(t * 1.5) * t).backward()
        assert y.data == pytest.approx(((torch.nn.functional.softplus(t * 1.5) * t)).item(), rel=1e-12)
        assert x.grad == pytest.approx(t.grad.item(), rel=1e-12)
    assert gradcheck(lambda a: softplus(a) * a, [0.7])
    assert softplus(Value(1.0))._op == "softplus" and softplus(2.0).data == pytest.approx(math.log1p(math.e ** 2))


def test_registered_op_runs_compiled_and_batched(registered):
    """The same registered rule runs in the compiled replay (on arrays) and in batch()."""
    cube = primitive("cube", lambda m, a: a * a * a, lambda m, g, out, a: (g * 3 * a * a,))
    w = Value(0.8)
    f = chainrule.compile(lambda x: cube(x * w) + x)
    f(0.5)
    for x0 in (0.3, -1.1):
        w.grad = 0.0
        out = f(x0)
        out.backward()
        assert out.data == pytest.approx((x0 * 0.8) ** 3 + x0, rel=1e-12)
        assert w.grad == pytest.approx(3 * (x0 * 0.8) ** 2 * x0, rel=1e-12)
    batch = f.batch(np.array([0.3, -1.1, 2.0]))
    assert batch == pytest.approx([(x * 0.8) ** 3 + x for x in (0.3, -1.1, 2.0)], rel=1e-12)


def test_registered_op_with_three_inputs(registered):
    """An op of three inputs (a fused multiply-add) works eagerly, with every input's gradient."""
    fma = primitive("fma", lambda m, a, b, c: a * b + c, lambda m, g, out, a, b, c: (g * b, g * a, g))
    a, b, c = Value(2.0), Value(-3.0), Value(0.5)
    y = fma(a, b, c) * 2
    y.backward()
    assert (y.data, a.grad, b.grad, c.grad) == (-11.0, -6.0, 4.0, 2.0)
    assert fma(a, b, c)._prev == (a, b, c)


def test_registered_op_draws_and_explains(registered):
    """A registered op shows its name in a drawing and gets a chain-rule line in explain."""
    square = primitive("sq", lambda m, a: a * a, lambda m, g, out, a: (g * 2 * a,))
    x = Value(3.0, label="x")
    y = square(x); y.label = "y"
    assert "sq" in chainrule.draw_dot(y).source
    text = chainrule.explain(y, file=io.StringIO())
    line = next(line for line in text.splitlines() if line.startswith("x.grad"))
    assert "6" in line.split("->")[-1]          # d(x*x)/dx at 3 is 6, shown as the line's result


@pytest.mark.parametrize(("args", "error", "match"), [
    (("+", lambda m, a, b: a + b, lambda m, g, out, a, b: (g, g)), ValueError, "exists already"),
    (("two terms", lambda m, a: a, lambda m, g, out, a: (g,)), ValueError, "printable name without spaces"),
    (("", lambda m, a: a, lambda m, g, out, a: (g,)), ValueError, "name"),
    (("bad_terms", lambda m, a: a * a, lambda m, g, out, a: (g, g)), ValueError, "tuple of 1 gradient term"),
    (("bare_term", lambda m, a: a * a, lambda m, g, out, a: g * 2 * a), ValueError, "tuple of 1"),
    (("bad_args", lambda m, a: a * a, lambda m, g, a: (g,)), TypeError, "4 arguments"),
    (("no_inputs", lambda m: 1.0, lambda m, g, out: ()), TypeError, "forward"),
    (("not_fn", "a * a", lambda m, g, out, a: (g,)), TypeError, "must be a function"),
    (("not_number", lambda m, a: "x", lambda m, g, out, a: (g,)), TypeError, "return a number"),
])
def test_bad_rules_fail_at_registration(registered, args, error, match):
    """A bad rule fails when it is added, with a message naming the problem."""
    with pytest.raises(error, match=match):
        primitive(*args)


def test_registered_op_wrong_input_count_is_a_clear_error(registered):
    """Calling a registered op with the wrong number of inputs names the op and the count."""
    square = primitive("sq2", lambda m, a: a * a, lambda m, g, out, a: (g * 2 * a,))
    with pytest.raises(TypeError, match="sq2 takes 1 input, got 2"):
        square(Value(1.0), Value(2.0))
    with pytest.raises(TypeError, match="Values or numbers"):
        square("3")


# --- grad mode per thread -------------------------------------------------------------------------

def test_no_grad_in_one_thread_leaves_another_recording():
    """A no_grad block held open in one thread does not stop another thread from building its graph."""
    inside, release = threading.Event(), threading.Event()
    seen = {}

    def evaluator():
        with no_grad():
            seen["evaluator"] = is_grad_enabled()
            inside.set()
            release.wait(10)
            seen["evaluator_graph"] = (Value(2.0) * 3)._prev

    t = threading.Thread(target=evaluator)
    t.start()
    assert inside.wait(10)
    try:
        w = Value(1.5)
        y = w * w + 1                     # the training thread, while the other is inside no_grad
        y.backward()
        seen["trainer"] = is_grad_enabled()
    finally:
        release.set()
        t.join(10)
    assert seen["evaluator"] is False and seen["evaluator_graph"] == ()
    assert seen["trainer"] is True and w.grad == 3.0


def test_two_threads_train_and_evaluate_at_once():
    """One thread trains an MLP while another evaluates it under no_grad; the gradients equal a lone run."""
    import random
    random.seed(0)
    model = MLP(2, [4, 1])
    x, target = [0.5, -1.0], 0.3

    def grads():
        model.zero_grad()
        ((model(x) - target) ** 2).backward()
        return [p.grad for p in model.parameters()]

    expected = grads()
    stop = threading.Event()

    def evaluate():
        while not stop.is_set():
            with no_grad():
                model([1.0, 2.0])

    t = threading.Thread(target=evaluate)
    t.start()
    try:
        results = [grads() for _ in range(30)]
    finally:
        stop.set()
        t.join(10)
    assert all(r == expected for r in results)


def test_enable_grad_inside_no_grad_and_nesting():
    """enable_grad re-enables recording inside no_grad; each block restores the mode it found."""
    with no_grad():
        assert not is_grad_enabled()
        with enable_grad():
            assert is_grad_enabled() and len((Value(1.0) * 2)._prev) == 2
        assert not is_grad_enabled()
    assert is_grad_enabled()


def test_track_created_sees_this_threads_values_only():
    """track_created collects Values made in its own thread (ops and constructors), nested blocks both."""
    w = Value(1.0)
    other = []
    with track_created() as outer:
        a = w * 2
        with track_created() as inner:
            b = a + 1
        t = threading.Thread(target=lambda: other.append(Value(5.0) * 2))
        t.start(); t.join(10)
    assert all(any(v is x for x in outer) for v in (a, b)) and not any(v is w for v in outer)
    assert any(v is b for v in inner) and not any(v is a for v in inner)
    assert not any(v is other[0] for v in outer)


# --- memory: no cycles without closures --------------------------------------------------------------

def test_graphs_without_closures_hold_no_reference_cycles():
    """An MLP's loss graph (table ops only) is freed by reference counting: gc.collect() finds nothing."""
    import random
    random.seed(1)
    model = MLP(3, [8, 8, 1])
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        loss = sum((model([1.0, -2.0, 0.5 * i]) - i) ** 2 for i in range(5))
        loss.backward()
        assert len(topological_order(loss)) > 500
        del loss
        assert gc.collect() == 0
    finally:
        if was:
            gc.enable()


def test_a_node_is_one_object_with_no_tuple():
    """Each node is one object (its inputs live in slots, not a tuple): a 100,000-op chain allocates 1 object per op."""
    x, w = Value(1.0), Value(1.0)
    gc.collect()
    before = len(gc.get_objects())
    for _ in range(100_000):
        x = x * w
    grown = len(gc.get_objects()) - before
    # About one object per op (a tuple per node would make it two); other garbage may come and go.
    assert 99_000 <= grown < 101_000


# --- hypothesis: closures and table rules give the same gradients -----------------------------------

@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["tanh", "exp", "pow"]), st.floats(-1.5, 1.5)), min_size=1, max_size=6),
       st.floats(-1.0, 1.0))
def test_closure_ops_equal_table_ops_on_random_chains(steps, x0):
    """The same random chain written with the lecture's closures and with the table gives the same gradient."""
    def chain(x, closures):
        for op, c in steps:
            x = x * c + 0.1
            if op == "tanh":
                x = lecture_tanh(x) if closures else x.tanh()
            elif op == "exp":
                x = lecture_exp(x * 0.3) if closures else (x * 0.3).exp()
            else:
                x = lecture_pow(x, 2) if closures else x ** 2
        return x
    a, b = Value(x0), Value(x0)
    ya, yb = chain(a, True), chain(b, False)
    ya.backward(); yb.backward()
    assert ya.data == pytest.approx(yb.data, rel=1e-12, abs=1e-300)
    assert a.grad == pytest.approx(b.grad, rel=1e-9, abs=1e-300)


def test_readme_own_ops_section_runs():
    """Every code block of the README's "Your own ops, two ways" section runs, with its asserts."""
    from pathlib import Path
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = text.split("## Your own ops, two ways", 1)[1].split("\n## ", 1)[0]
    blocks = [b.split("```", 1)[0] for b in section.split("```python\n")[1:]]
    assert len(blocks) == 3
    before = set(PRIMITIVES)
    try:
        for block in blocks:
            exec(compile(block, "README.md", "exec"), {})
    finally:
        for name in set(PRIMITIVES) - before:
            del PRIMITIVES[name]


# --- found by an adversarial pass --------------------------------------------------------------------

def test_wrapping_a_table_nodes_step_in_a_closure_works():
    """``f = y._backward; y._backward = lambda: (log(), f())`` (a logging hook) keeps the table step."""
    x = Value(3.0)
    y = x ** 2
    calls = []
    step = y._backward
    y._backward = lambda: (calls.append(1), step())
    y.backward()
    assert x.grad == 6.0 and calls == [1]


def test_writing_op_or_prev_keeps_the_derivative():
    """Renaming a table node, or writing back its own _op/_prev, keeps its derivative."""
    x = Value(3.0)
    y = x * 2
    y._op = y._op
    y._prev = y._prev
    y.backward()
    assert x.grad == 2.0 and rule_of(y) is PRIMITIVES["*"]
    x.grad = 0.0
    z = x ** 2
    z._op = "square"
    z.backward()
    assert x.grad == 6.0 and z._op == "square"


def test_no_grad_is_reusable_and_a_decorator():
    """One no_grad() object serves several blocks, nested too; @no_grad and @no_grad() decorate."""
    block = no_grad()
    with block:
        with block:
            assert not is_grad_enabled()
        assert not is_grad_enabled()
    assert is_grad_enabled()

    @no_grad
    def bare():
        return is_grad_enabled()

    @no_grad()
    def called():
        return is_grad_enabled()
    assert bare() is False and called() is False and is_grad_enabled()


def test_user_rules_are_checked_on_every_call(registered):
    """A user rule that gives a complex number, or the wrong number of terms at a point the probes missed, is a named error."""
    cbrt = primitive("cbrt_naive", lambda m, a: a ** (1 / 3), lambda m, g, out, a: (g / (3 * out * out),))
    assert cbrt(8.0).data == pytest.approx(2.0)
    with pytest.raises(TypeError, match="cbrt_naive.*complex"):
        cbrt(-8.0)
    floor = primitive("floor_int", lambda m, a: math.floor(a), lambda m, g, out, a: (0.0,))
    assert type(floor(2.5).data) is float
    # Defined only above 3, so the probes cannot check it; its bad backward is caught when it runs.
    odd = primitive("above3", lambda m, a: m.log(a - 3), lambda m, g, out, a: (g, g))
    with pytest.raises(ValueError, match="above3.*1 gradient term"):
        odd(Value(5.0)).backward()
    with pytest.raises(TypeError, match="n_inputs=1, but forward takes 2"):
        primitive("mismatch", lambda m, a, b: a * b, lambda m, g, out, a, b: (g, g), n_inputs=1)


def test_huge_integer_exponent_and_empty_op_name_are_clear():
    """``x ** 10**400`` names the exponent; a node with inputs and no op suggests a closure only."""
    with pytest.raises(OverflowError, match="exponent"):
        Value(2.0) ** 10 ** 400
    a = Value(1.0)
    with pytest.raises(NotImplementedError, match="no op") as e:
        Value(2.0, (a,)).backward()
    assert "primitive(''" not in str(e.value)


def test_a_subclass_with_its_own_init_gets_plain_values_from_ops():
    """Ops on a subclass whose __init__ sets attributes give plain Values, never half-built subclass objects."""
    class Tagged(Value):
        def __init__(self, data, tag="t", **kw):
            super().__init__(data, **kw)
            self.tag = tag

    y = Tagged(2.0) * 3
    assert type(y) is Value and y.data == 6.0


def test_is_grad_enabled_is_public():
    """is_grad_enabled is importable from the package, like torch.is_grad_enabled."""
    assert chainrule.is_grad_enabled() is True
