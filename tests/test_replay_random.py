"""Random programs: the compiled replay equals eager, and both equal PyTorch float64, on graphs that
mix captured interior nodes, several outputs, nan/inf-producing branches and switched-off paths;
and one example's graph replayed over random batches (vmap) equals eager on the batch loss."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chainrule import Value
from chainrule.replay import compile, vmap
from replay_checks import assert_close

torch = pytest.importorskip("torch")


class ValueOps:
    """The ops of a random program on chainrule Values."""
    tanh, sigmoid, relu, exp, log, sqrt = (staticmethod(lambda a, f=f: getattr(a, f)())
                                           for f in ("tanh", "sigmoid", "relu", "exp", "log", "sqrt"))

    @staticmethod
    def const(like, c):
        return c


class TorchOps:
    """The same ops on float64 tensors."""
    tanh, sigmoid, relu, exp, log, sqrt = (staticmethod(f) for f in (torch.tanh, torch.sigmoid, torch.relu,
                                                                     torch.exp, torch.log, torch.sqrt))

    @staticmethod
    def const(like, c):
        return torch.tensor(c, dtype=torch.float64)


def apply(kind, a, b, k, m):
    """One op; every op stays where eager raises nothing, but many make nan or inf derivatives."""
    if kind == "tanh":
        return m.tanh(a)
    if kind == "sigmoid":
        return m.sigmoid(a)
    if kind == "relu":
        return m.relu(a)
    if kind == "exp":
        return m.exp(m.tanh(a))
    if kind == "log":
        return m.log(a * a + 0.5)
    if kind == "sqrt_relu":                      # slope inf where relu is 0: switched off, or nan
        return m.sqrt(m.relu(a) * (b * b)) if k % 2 else m.sqrt(m.relu(a))
    if kind == "powk":
        return (m.sigmoid(a) + 0.25) ** [2, 3, -1, 0.5, -1.5][k % 5]
    if kind == "neg_base":                       # d/d exponent is nan (log of a negative base)
        return m.const(a, -2.0) ** (m.relu(a) * 0.0 + 2.0)
    if kind == "zero_pow":                       # 0 ** 0 is 1 with gradient 0; 0 ** b for b >= 0
        return (m.relu(a) * 0.0) ** (m.relu(b))
    if kind == "+":
        return a + b
    if kind == "*":
        return a * b
    if kind == "-":
        return a - b
    if kind == "/":
        return a / (b * b + 1.0)
    if kind == "pow":
        return (m.sigmoid(a) + 0.5) ** m.tanh(b)
    return a * [2.5, -0.75, 3.0][k % 3] + [1.0, -2.0, 0.125][k % 3]


KINDS = ["tanh", "sigmoid", "relu", "exp", "log", "sqrt_relu", "powk", "neg_base", "zero_pow",
         "+", "*", "-", "/", "pow", "affine"]
op_strategy = st.tuples(st.sampled_from(KINDS), st.integers(0, 60), st.integers(0, 60), st.integers(0, 4))
dyadic = st.sampled_from([-1.5, -1.0, -0.5, 0.0, 0.25, 0.5, 1.0, 1.5, 2.0])


def program(ops, params, pre_ops, xs, outs, m):
    """Interior nodes made from the parameters before the call, then the program on the inputs,
    returning several outputs (as a list)."""
    nodes = list(params)
    for kind, i, j, k in pre_ops:
        nodes.append(apply(kind, nodes[i % len(nodes)], nodes[j % len(nodes)], k, m))
    return nodes, lambda x: _run(ops, nodes, x, outs, m)


def _run(ops, captured, xs, outs, m):
    nodes = list(captured) + list(xs)
    for kind, i, j, k in ops:
        nodes.append(apply(kind, nodes[i % len(nodes)], nodes[j % len(nodes)], k, m))
    tail = nodes[len(captured) + len(xs):] or nodes
    # A long sum with products in it (the fused shape), fanning out to earlier nodes.
    chain = nodes[0]
    for t in range(len(tail)):
        chain = chain + tail[t] * nodes[(t * 7) % len(nodes)]
    return [chain] + [tail[o % len(tail)] for o in outs]


@settings(max_examples=150, deadline=None, derandomize=True)
@given(ops=st.lists(op_strategy, min_size=1, max_size=14), pre_ops=st.lists(op_strategy, min_size=1, max_size=4),
       params=st.lists(dyadic, min_size=1, max_size=4), x1=st.lists(dyadic, min_size=3, max_size=3),
       x2=st.lists(dyadic, min_size=3, max_size=3), outs=st.lists(st.integers(0, 20), min_size=1, max_size=3))
def test_random_programs_compiled_eager_and_torch_agree(ops, pre_ops, params, x1, x2, outs):
    """Every output's data and every parameter's gradient, backward from each output in turn:
    replay == eager == PyTorch (float64), nan and inf included; then, after a captured interior
    node and a parameter change, replay == eager on new inputs."""
    ps = [Value(v) for v in params]
    captured, fn = program(ops, ps, pre_ops, [], outs, ValueOps)
    f = compile(lambda x: fn_on(captured, x))

    def fn_on(nodes, x):
        return _run(ops, nodes, x, outs, ValueOps)

    def replayed_and_eager(x):
        results = f(np.array(x))
        got, want = [], []
        for o in range(len(results)):
            for v in captured:
                v.grad = 0.0
            results[o].backward()
            got.append([results[o].data] + [p.grad for p in ps])
            for v in captured:
                v.grad = 0.0
            eager = fn_on(captured, [Value(v) for v in x])[o]
            eager.backward()
            want.append([eager.data] + [p.grad for p in ps])
        return got, want

    f(np.array(x1))                              # records
    got, want = replayed_and_eager(x1)
    assert_close(got, want)

    tp = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in params]
    t_nodes, _ = program(ops, tp, pre_ops, [], outs, TorchOps)
    t_x = [torch.tensor(v, dtype=torch.float64) for v in x1]
    t_outs = _run(ops, t_nodes, t_x, outs, TorchOps)
    t_want = []
    for o, out in enumerate(t_outs):
        grads = torch.autograd.grad(out, tp, allow_unused=True, retain_graph=True) if out.requires_grad \
            else [None] * len(tp)
        t_want.append([out.item()] + [0.0 if g is None else g.item() for g in grads])
    assert_close(want, t_want, rtol=1e-11)

    captured[-1].data = 0.75                     # an interior node captured by fn, read live
    ps[0].data = -0.25
    got, want = replayed_and_eager(x2)
    assert_close(got, want)


def example_fn(ops, ps):
    def fn(x, y):
        nodes = list(ps) + list(x)
        for kind, i, j, k in ops:
            nodes.append(apply(kind, nodes[i % len(nodes)], nodes[j % len(nodes)], k, ValueOps))
        score = nodes[-1]
        for p in ps:                                  # a dense layer's dot product over the inputs
            score = score + p * x[0]
        penalty = sum((p * p for p in ps), Value(0.0)) * 0.01      # depends on no example
        return (score - y) ** 2 + penalty
    return fn


@settings(max_examples=60, deadline=None, derandomize=True)
@given(ops=st.lists(op_strategy, min_size=1, max_size=12), params=st.lists(dyadic, min_size=1, max_size=4),
       n=st.integers(1, 40), reduce=st.sampled_from(["mean", "sum"]), seed=st.integers(0, 2**16))
def test_vmap_equals_eager_on_the_batch_loss(ops, params, n, reduce, seed):
    """One example's random graph, replayed over a random batch, gives eager's batch loss (the
    mean or sum of the examples' graphs, an L2-like penalty included) and every gradient (1e-12)."""
    ps = [Value(v) for v in params]
    fn = example_fn(ops, ps)
    rng = np.random.default_rng(seed)
    X, y = rng.choice([-1.5, -0.5, 0.0, 0.5, 1.0, 2.0], size=(n, 3)), rng.normal(size=n)
    loss = vmap(fn, reduce=reduce)(X, y)
    loss.backward()
    got = [loss.data] + [p.grad for p in ps]
    for p in ps:
        p.grad = 0.0
    total = fn([Value(v) for v in X[0]], Value(y[0]))
    for i in range(1, n):
        total = total + fn([Value(v) for v in X[i]], Value(y[i]))
    eager = total * (1.0 / n) if reduce == "mean" else total
    eager.backward()
    assert_close(got, [eager.data] + [p.grad for p in ps])
