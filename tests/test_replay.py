"""Compiled replay: recorded once, replayed with numpy, equal to the eager engine."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chainrule import MLP, Value, no_grad
from chainrule.replay import Compiled, ReplayMismatchError, ReplayValue, compile
from replay_checks import assert_close


def moons(n=40, seed=3):
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, math.pi, n)
    upper = rng.random(n) < 0.5
    X = np.where(upper[:, None], np.c_[np.cos(t), np.sin(t)], np.c_[1 - np.cos(t), 0.5 - np.sin(t)])
    X += rng.normal(0, 0.1, X.shape)
    y = np.where(upper, 1.0, -1.0)
    return X, y


def demo_loss(model):
    """micrograd's demo loss: mean hinge + 1e-4 * sum of squared parameters."""
    params = model.parameters()

    def loss(X, y):
        scores = [model(x) for x in X]
        losses = [(1 + -yi * s).relu() for yi, s in zip(y, scores)]
        return sum(losses) * (1.0 / len(losses)) + 1e-4 * sum(p * p for p in params)
    return loss


def demo_model():
    return MLP(2, [16, 16, 1], activation="relu", output_activation="linear")


def eager_step(loss_fn, model, *args):
    model.zero_grad()
    loss = loss_fn(*[a.tolist() if isinstance(a, np.ndarray) else a for a in args])
    loss.backward()
    return loss.data, [p.grad for p in model.parameters()]


def test_demo_workload_matches_eager_over_sgd_steps():
    """On micrograd's demo (MLP 2-16-16-1, hinge + L2, SGD), every step's loss and every
    parameter's gradient from the replay equal the eager engine's, and so do the trained weights."""
    X, y = moons()
    model = demo_model()
    twin = demo_model()
    for p, q in zip(model.parameters(), twin.parameters()):
        q.data = p.data
    step = compile(demo_loss(model))
    eager = demo_loss(twin)
    for k in range(4):
        loss = step(X, y)
        model.zero_grad()
        loss.backward()
        data, grads = eager_step(eager, twin, X, y)
        assert_close(loss.data, data)
        assert_close([p.grad for p in model.parameters()], grads)
        lr = 1.0 - 0.9 * k / 100
        for p, q in zip(model.parameters(), twin.parameters()):
            p.data -= lr * p.grad
            q.data -= lr * q.grad
    assert_close([p.data for p in model.parameters()], [q.data for q in twin.parameters()])


def test_demo_gradients_match_pytorch():
    """The replayed demo loss and its parameter gradients equal PyTorch float64 autograd on the same weights."""
    torch = pytest.importorskip("torch")
    X, y = moons(30)
    model = demo_model()
    loss = compile(demo_loss(model))
    loss(X, y)
    out = loss(X, y)
    model.zero_grad()
    out.backward()
    ts = []
    for layer in model.layers:
        W = torch.tensor([[w.data for w in n.w] for n in layer.neurons], dtype=torch.float64, requires_grad=True)
        b = torch.tensor([n.b.data for n in layer.neurons], dtype=torch.float64, requires_grad=True)
        ts.append((W, b))
    h = torch.tensor(X)
    for i, (W, b) in enumerate(ts):
        h = h @ W.T + b
        if i < len(ts) - 1:
            h = torch.relu(h)
    t_loss = torch.relu(1 - torch.tensor(y) * h[:, 0]).mean() + 1e-4 * sum((W ** 2).sum() + (b ** 2).sum()
                                                                           for W, b in ts)
    t_loss.backward()
    assert out.data == pytest.approx(t_loss.item(), rel=1e-12)
    for layer, (W, b) in zip(model.layers, ts):
        assert_close([[w.grad for w in n.w] for n in layer.neurons], W.grad.numpy())
        assert_close([n.b.grad for n in layer.neurons], b.grad.numpy())


def test_training_loop_runs_unchanged_with_optimizer():
    """The plain loop (call, zero_grad, backward, opt.step) trains a compiled loss to the same weights as eager."""
    from chainrule.optim import SGD
    X, y = moons(20)
    model, twin = demo_model(), demo_model()
    for p, q in zip(model.parameters(), twin.parameters()):
        q.data = p.data
    step = compile(demo_loss(model))
    eager = demo_loss(twin)
    opt = SGD(model.parameters(), lr=lambda k: 1.0 - 0.9 * k / 100)
    opt_twin = SGD(twin.parameters(), lr=lambda k: 1.0 - 0.9 * k / 100)
    first = None
    for _ in range(5):
        loss = step(X, y)
        model.zero_grad()
        loss.backward()
        opt.step()
        first = loss.data if first is None else first
        twin_loss = eager(X.tolist(), y.tolist())
        twin.zero_grad()
        twin_loss.backward()
        opt_twin.step()
    assert loss.data < first
    assert_close([p.data for p in model.parameters()], [q.data for q in twin.parameters()], rtol=1e-11)


def test_first_call_result_is_eager_data_with_replay_backward():
    """The recording call returns the eager number, and its backward gives the eager gradients."""
    model = MLP(3, [4, 2])
    fn = compile(lambda x: model(x)[0] * model(x)[1])
    out = fn([1.0, -2.0, 0.5])
    assert isinstance(out, ReplayValue)
    model.zero_grad()
    out.backward()
    got = [p.grad for p in model.parameters()]
    model.zero_grad()
    expected = model([1.0, -2.0, 0.5])[0] * model([1.0, -2.0, 0.5])[1]
    expected.backward()
    assert out.data == expected.data
    assert_close(got, [p.grad for p in model.parameters()])


def test_two_backward_calls_accumulate_like_eager():
    """Calling backward() twice on a replayed result doubles parameter gradients, as eager backward does."""
    w = Value(0.7)
    fn = compile(lambda x: (w * x).tanh() * w)
    fn(1.5)
    out = fn(2.0)
    out.backward()
    out.backward()
    eager = (w * 2.0).tanh() * w
    w_grad = w.grad
    w.grad = 0.0
    eager.backward()
    eager.backward()
    assert w_grad == pytest.approx(w.grad, rel=1e-12)
    assert w_grad != 0.0


def test_results_of_two_calls_keep_their_own_values():
    """A result keeps its call's numbers: backward on an older result still uses that call's inputs."""
    w = Value(0.3)
    fn = compile(lambda x: (w * x).exp())
    fn(0.0)
    first = fn(1.0)
    second = fn(2.0)
    first.backward()
    assert w.grad == pytest.approx(math.exp(0.3), rel=1e-12)
    w.grad = 0.0
    second.backward()
    assert w.grad == pytest.approx(2 * math.exp(0.6), rel=1e-12)


def test_parameter_updated_between_calls_is_read_fresh():
    """A captured Value's current .data is used at every replay, so updates between calls take effect."""
    w, b = Value(2.0), Value(-1.0)
    fn = compile(lambda x: (w * x + b).sigmoid())
    fn(3.0)
    w.data, b.data = -0.5, 4.0
    out = fn(3.0)
    assert out.data == pytest.approx(1 / (1 + math.exp(-(-0.5 * 3.0 + 4.0))), rel=1e-12)


def test_values_created_inside_are_constants_and_captured_ones_parameters():
    """A Value made inside fn is baked in; a Value captured from outside is a parameter and gets gradients."""
    outside = Value(3.0)

    def fn(x):
        inside = Value(2.0)
        return outside * inside * x
    f = compile(fn)
    f(1.0)
    outside.data = 5.0
    out = f(1.0)
    out.backward()
    assert out.data == 10.0
    assert outside.grad == 2.0


def test_structure_mismatch_raises_named_error():
    """Different shapes, argument counts or integer arguments raise ReplayMismatchError naming the difference."""
    model = MLP(2, [3, 1])
    fn = compile(lambda X, labels: sum(model(x) * c for x, c in zip(X, labels)))
    fn(np.zeros((4, 2)), np.array([1, 2, 3, 4]))
    with pytest.raises(ReplayMismatchError, match=r"argument 0: recorded floats of shape \(4, 2\), got shape \(5, 2\)"):
        fn(np.zeros((5, 2)), np.array([1, 2, 3, 4]))
    with pytest.raises(ReplayMismatchError, match="argument 1: recorded integers.*baked in"):
        fn(np.zeros((4, 2)), np.array([1, 2, 3, 5]))
    with pytest.raises(ReplayMismatchError, match="recorded with 2 arguments, called with 1"):
        fn(np.zeros((4, 2)))
    assert isinstance(ReplayMismatchError("x"), ValueError)


def test_value_arguments_are_refused():
    """Passing a Value as an argument is a TypeError that says to pass its .data."""
    fn = compile(lambda x: x * 2)
    with pytest.raises(TypeError, match=r"pass argument 0.data"):
        fn(Value(1.0))


def test_recording_inside_no_grad_still_records():
    """A first call inside no_grad() still records the graph, so later calls and backward work."""
    w = Value(1.5)
    fn = compile(lambda x: w * x * x)
    with no_grad():
        fn(2.0)
    out = fn(3.0)
    out.backward()
    assert (out.data, w.grad) == (13.5, 9.0)


def test_batch_equals_per_example_eager():
    """batch() on N examples equals calling the eager model on each example, for one and several outputs."""
    X = np.random.default_rng(0).normal(size=(50, 2))
    for nouts in ([8, 8, 3], [5, 1]):
        model = MLP(2, nouts, activation="tanh", output_activation="linear")
        got = compile(model).batch(X)
        expected = [[v.data for v in out] if isinstance(out, list) else out.data
                    for out in (model(list(x)) for x in X)]
        assert got.shape == np.shape(expected)
        assert_close(got, expected)


def test_batch_in_chunks_and_after_a_call():
    """batch() gives the same numbers in small chunks, after a normal call recorded the function."""
    model = MLP(3, [4, 2])
    fn = compile(model)
    fn([0.1, 0.2, 0.3])
    X = np.random.default_rng(1).normal(size=(9, 3))
    assert_close(fn.batch(X, chunk=2), fn.batch(X))
    assert_close(fn.batch(X)[4], [v.data for v in model(list(X[4]))])


def test_batch_of_a_function_over_several_rows():
    """batch() of a function recorded on a (3, 2) block (a matrix-product group) equals eager per block."""
    model = MLP(2, [4, 3, 1], activation="relu", output_activation="linear")

    def fn(X):
        return sum((model(x) for x in X), Value(0.0)).tanh()
    blocks = np.random.default_rng(2).normal(size=(7, 3, 2))
    assert_close(compile(fn).batch(blocks), [fn(block.tolist()).data for block in blocks])


def test_long_sums_become_one_operation():
    """A 200-term sum and an MLP's weighted sums replay in a handful of groups, not one per term."""
    fn = compile(lambda xs: sum(x * x for x in xs))
    fn(np.ones(200))
    assert fn.n_groups == 1
    model = MLP(2, [16, 16, 1], activation="relu", output_activation="linear")
    predict = compile(model)
    predict([0.0, 1.0])
    assert predict.n_groups == 5


def test_every_primitive_and_errors_match_eager():
    """exp, log, pow (both kinds), tanh, sigmoid and relu replay like eager, and overflow or a bad domain
    raises the eager error type instead of returning inf or nan."""
    a, b = Value(0.4), Value(1.3)

    def fn(x):
        return ((a * x).exp() + (b * x).log() + (b ** (a * x)) + (x ** 2.5) + (a * x).tanh()
                + (b - x).sigmoid() + (x - 1).relu() + x / b)
    f = compile(fn)
    f(0.5)
    for x in (0.7, 2.0):
        a.grad = b.grad = 0.0
        out = f(x)
        out.backward()
        got = (out.data, a.grad, b.grad)
        a.grad = b.grad = 0.0
        eager = fn(Value(x))
        eager.backward()
        assert_close(got, (eager.data, a.grad, b.grad))
    with pytest.raises(OverflowError, match="exp"):
        fn(Value(2000.0))
    with pytest.raises(OverflowError, match="exp"):
        f(2000.0)
    logf = compile(lambda x: (x * 1.0).log())
    logf(1.0)
    with pytest.raises(ValueError, match="log"):
        logf(-1.0)
    g = compile(lambda x: (x * 1.0) ** -1.0)
    g(2.0)
    with pytest.raises(ZeroDivisionError):
        g(0.0)
    # sqrt's slope at 0 is inf (as in PyTorch), so d sqrt(a*x)/da at x = 0 is inf * 0 = nan in both.
    h = compile(lambda x: (a * x).sqrt())
    h(4.0)
    a.grad = 0.0
    h(0.0).backward()
    replayed = a.grad
    a.grad = 0.0
    (a * Value(0.0)).sqrt().backward()
    assert math.isnan(replayed) and math.isnan(a.grad)


def test_multiple_outputs_backward_from_one():
    """A function returning several Values returns several results; backward from one uses only its graph."""
    w = Value(2.0)
    f = compile(lambda x: (w * x, [w * w]))
    f(1.0)
    result = f(3.0)
    assert isinstance(result, tuple) and isinstance(result[1], list)
    first, (second,) = result
    second.backward()
    assert (first.data, second.data, w.grad) == (6.0, 4.0, 4.0)


# --- random graphs ---------------------------------------------------------------------------------

UNARY = ["tanh", "sigmoid", "relu", "exp_bounded", "log_positive", "powk", "neg"]
BINARY = ["+", "*", "-", "pow_positive", "div_safe", "const_mul", "const_add"]


def build_random(ops, leaves):
    """Build a graph from an op list over `leaves`, staying in each primitive's domain."""
    nodes = list(leaves)
    for kind, i, j, k in ops:
        a, b = nodes[i % len(nodes)], nodes[j % len(nodes)]
        if kind == "tanh":
            n = a.tanh()
        elif kind == "sigmoid":
            n = a.sigmoid()
        elif kind == "relu":
            n = a.relu()
        elif kind == "exp_bounded":
            n = a.tanh().exp()
        elif kind == "log_positive":
            n = (a * a + 0.5).log()
        elif kind == "powk":
            n = (a.sigmoid() + 0.25) ** [2, 3, -1, 0.5, -1.5][k % 5]
        elif kind == "neg":
            n = -a
        elif kind == "+":
            n = a + b
        elif kind == "*":
            n = a * b
        elif kind == "-":
            n = a - b
        elif kind == "pow_positive":
            n = (a.sigmoid() + 0.5) ** b.tanh()
        elif kind == "div_safe":
            n = a / (b * b + 1.0)
        elif kind == "const_mul":
            n = a * [2.5, -0.75, 3][k % 3]
        else:
            n = a + [1.0, -2.0, 0.125][k % 3]
        nodes.append(n)
    # Long sums with products in them (the fused shapes), reusing nodes: fan-out everywhere.
    tail = nodes[len(leaves):] or nodes
    chain = sum((tail[t % len(tail)] * nodes[(t * 7) % len(nodes)] for t in range(len(tail) + 3)), nodes[0])
    return chain + sum(tail[-3:], Value(0.0))


op_strategy = st.tuples(st.sampled_from(UNARY + BINARY), st.integers(0, 40), st.integers(0, 40), st.integers(0, 4))
dyadic = st.integers(-24, 24).map(lambda n: n / 8)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(ops=st.lists(op_strategy, min_size=1, max_size=25),
       params=st.lists(dyadic, min_size=1, max_size=4),
       x1=st.lists(dyadic, min_size=6, max_size=6),
       x2=st.lists(dyadic, min_size=6, max_size=6))
def test_random_graphs_match_eager(ops, params, x1, x2):
    """On random graphs over every primitive, with fan-out, reused nodes and constants, built once per
    row of a (2, 3) input (so same-shaped work is grouped and products form grids), replayed data,
    every parameter's gradient and batch() equal eager, on the recording inputs and on new ones."""
    ps = [Value(v) for v in params]

    def fn(rows):
        # A small dense layer first (weights shared by the rows: a matrix-product group), then the graph.
        dense = [[sum((ps[(j + k) % len(ps)] * v for k, v in enumerate(row)), ps[j % len(ps)]) for j in range(3)]
                 for row in rows]
        outs = [build_random(ops, ps + list(row) + d) for row, d in zip(rows, dense)]
        return outs[0] * outs[1] + outs[1]
    f = compile(fn)
    blocks = [np.reshape(x1, (2, 3)), np.reshape(x2, (2, 3))]
    for block in blocks:
        for p in ps:
            p.grad = 0.0
        out = f(block)
        out.backward()
        got = [out.data] + [p.grad for p in ps]
        for p in ps:
            p.grad = 0.0
        eager = fn([[Value(v) for v in row] for row in block.tolist()])
        eager.backward()
        assert_close(got, [eager.data] + [p.grad for p in ps])
    expected = [fn([[Value(v) for v in row] for row in block.tolist()]).data for block in blocks]
    assert_close(f.batch(np.array(blocks)), expected)


def test_compile_rejects_non_callables_and_bad_outputs():
    """compile() needs a callable, and fn must return Values."""
    with pytest.raises(TypeError, match="compile needs a function"):
        compile(3)
    with pytest.raises(TypeError, match="must return a Value"):
        compile(lambda x: 1.0)(2.0)
    assert isinstance(compile(lambda x: x), Compiled)
