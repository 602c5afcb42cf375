"""Adversarial checks of the compiled replay's latest changes, each looking for a silent wrong answer:

- first writers (plan._find_first_writers, SumDot's ``into_A``/``into_B``): random layered programs
  with weights reused across layers, layers whose outputs are outputs too, parameters as outputs,
  weights also used in plain terms, products and L2 penalties written in several orders, outputs
  backpropagated one at a time, two examples per call, batches of one, nan/inf inputs, and a
  backward that is re-run with checks after its unchecked pass wrote gradients directly;
- the shared bias's sum as a product with ones (kernels._first_axis_adder) fed a rule's constant
  slope (a float, not an array);
- Values made by other threads (gradmode ``Made.elsewhere``, record._refuse_other_threads): no false
  refusal of a Value a worker made before the call, nested blocks, concurrent calls of one replay;
- the optimizer's one-piece array step and list-comprehension reads, against torch.optim around
  the 64-parameter threshold where eager steps switch to arrays.
"""

import random
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chainrule
from chainrule import MLP, Value, gradmode
from chainrule.losses import l2_penalty
from chainrule.optim import SGD, Adam, AdamW
from chainrule.replay import compile, vmap
from replay_checks import assert_close
from test_replay_record import check_compiled, check_vmap

SLOW_OK = dict(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


# --- 1. random layered programs: first writers ----------------------------------------------------

ACTIVATIONS = ["tanh", "relu", "linear", "sigmoid"]
OUTPUTS = ["sum", "element", "parameter", "penalty", "times_parameter", "plus_parameter", "hidden", "bias"]
NUMBERS = [-1.5, -0.5, 0.25, 0.75, 1.25, -0.0, 2.0]


def _neuron(ws, xs, b, shape: int):
    """sum(w * x) + b written left-deep or right-deep, the bias first or last (shape picks)."""
    terms = [w * x for w, x in zip(ws, xs)]
    if b is not None:
        terms = [b] + terms if shape % 3 == 2 else terms + [b]
    total = terms[0] if shape % 2 == 0 else terms[-1]
    for t in (terms[1:] if shape % 2 == 0 else reversed(terms[:-1])):
        total = total + t if shape % 2 == 0 else t + total
    return total


@st.composite
def layered(draw):
    """(width, weight matrices, biases, layers, outputs): every layer is width x width, so any
    matrix fits any layer and the same weights can serve several layers."""
    d, n = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    number = st.sampled_from(NUMBERS)
    mats = [[[draw(number) for _ in range(d)] for _ in range(d)] for _ in range(n)]
    biases = [[draw(number) for _ in range(d)] for _ in range(n)]
    layers = draw(st.lists(st.tuples(st.integers(0, n - 1), st.sampled_from(ACTIVATIONS), st.booleans(),
                                     st.integers(0, 5)), min_size=1, max_size=4))
    outs = draw(st.lists(st.tuples(st.sampled_from(OUTPUTS), st.integers(0, 50), st.integers(0, 50)),
                         min_size=1, max_size=4))
    return d, mats, biases, layers, outs


def build(spec):
    """fn(x) -> list of outputs for a ``layered`` spec, and the Values it captures."""
    d, mats, biases, layers, outs = spec
    W = [[[Value(x) for x in row] for row in m] for m in mats]
    B = [[Value(x) for x in row] for row in biases]
    captured = [v for m in W for row in m for v in row] + [v for row in B for v in row]

    def fn(x):
        h, hidden = list(x), []
        for j, act, use_bias, shape in layers:
            sums = [_neuron(W[j][i], h, B[j][i] if use_bias else None, shape + i) for i in range(d)]
            h = sums if act == "linear" else [getattr(s, act)() for s in sums]
            hidden.append(h)
        res = []
        for kind, i, k in outs:
            p = captured[i % len(captured)]
            if kind == "sum":
                res.append(sum(h[1:], h[0]))
            elif kind == "element":
                res.append(h[i % d])
            elif kind == "parameter":
                res.append(p)
            elif kind == "penalty":               # every square, in a rotated and maybe reversed order
                ws = captured[i % len(captured):] + captured[:i % len(captured)]
                ws = ws[::-1] if k % 2 else ws
                pen = ws[0] * ws[0]
                for w in ws[1:]:
                    pen = pen + w * w if k % 3 else w * w + pen
                res.append(pen * 0.5 + h[0])
            elif kind == "times_parameter":
                res.append(p * h[k % d] + hidden[k % len(hidden)][i % d])
            elif kind == "plus_parameter":
                res.append(h[k % d] + p)
            elif kind == "hidden":
                res.append(hidden[i % len(hidden)][k % d] * 1.0)
            else:
                res.append(B[i % len(B)][k % d].tanh() * h[0])
        return res
    return fn, captured, d


inputs = st.lists(st.sampled_from([0.5, -1.0, 2.0, 0.0, -0.0, 1.5]), min_size=6, max_size=6)
awkward = st.lists(st.sampled_from([0.5, float("nan"), float("inf"), -float("inf"), 1e300]), min_size=3, max_size=3)


@settings(max_examples=30, **SLOW_OK)
@given(spec=layered(), xs=st.lists(inputs, min_size=2, max_size=3), bad=awkward)
def test_layered_programs_compiled_match_eager_output_by_output(spec, xs, bad):
    """Every output of compile(fn) and every captured gradient after each output's backward alone
    equals eager, also after a call with nan, inf or 1e300 inputs (a checked re-run)."""
    fn, captured, d = build(spec)
    check_compiled(fn, captured, [(x[:d],) for x in xs] + [(bad[:d],), (xs[0][:d],)])


@settings(max_examples=20, **SLOW_OK)
@given(spec=layered(), xs=st.lists(inputs, min_size=2, max_size=3))
def test_layered_programs_on_two_examples_per_call_match_eager(spec, xs):
    """fn(x1) + fn(x2) in one compiled call: each layer is one matrix product over both examples
    (weights read as a matrix, two b-rows), gradients written or added as eager sums them."""
    fn, captured, d = build(spec)
    check_compiled(lambda x1, x2: fn(x1) + fn(x2), captured, [(x[:d], x[3:3 + d]) for x in xs])


@settings(max_examples=20, **SLOW_OK)
@given(spec=layered(), seed=st.integers(0, 1000), reduce=st.sampled_from(["mean", "sum"]))
def test_layered_programs_batched_match_eager_including_batches_of_one(spec, seed, reduce):
    """vmap of the sum of the outputs equals eager on the batch loss, for batches of 1 (the shape in
    which a batched product writes gradients directly) and of 3."""
    fn, captured, d = build(spec)

    def loss(x):
        r = fn(x)
        return sum(r[1:], r[0])
    rng = np.random.default_rng(seed)
    check_vmap(loss, captured, [rng.normal(size=(1, d)), rng.normal(size=(3, d)), rng.normal(size=(1, d))], reduce)


@settings(max_examples=15, **SLOW_OK)
@given(spec=layered(), seed=st.integers(0, 1000), order=st.sampled_from(["captured", "reversed", "shuffled"]))
def test_layered_programs_value_and_grad_in_an_optimizers_order_match_eager(spec, seed, order):
    """value_and_grad(params), the path of fit(compiled=True): the parameters laid out in the
    optimizer's order (a layer's weights then a strided matrix, or no view at all) give eager's
    loss and gradients, in that order, for batches of 1 and 4."""
    fn, captured, d = build(spec)

    def loss(x):
        r = fn(x)
        return sum(r[1:], r[0])
    rng = np.random.default_rng(seed)
    params = {"captured": captured, "reversed": captured[::-1],
              "shuffled": [captured[i] for i in rng.permutation(len(captured))]}[order]
    step = vmap(loss, reduce="mean").value_and_grad(params)
    for X in (rng.normal(size=(1, d)), rng.normal(size=(4, d))):
        got, grad = step(np.array([p.data for p in params]), X)
        for p in captured:
            p.grad = 0.0
        total = sum((loss([Value(v) for v in x]) for x in X), Value(0.0)) * (1.0 / len(X))
        total.backward()
        assert_close(got, total.data)
        assert_close(np.asarray(grad), [p.grad for p in params])


def _writes_first(replay) -> set:
    return {k.writes_first for k in replay._program.kernels if getattr(k, "grid", None) is not None}


def test_a_layer_used_twice_whose_outputs_are_outputs_writes_first_only_where_nothing_came_before():
    """The same layer applied twice, its first outputs also an output, a weight as an output and a
    penalty: the last use in forward writes its weight gradients, the earlier one adds into them,
    the penalty adds last; every output's gradients alone equal eager, compiled and batched."""
    random.seed(11)
    model = MLP(3, [3, 3, 1], activation="tanh", output_activation="linear")
    ps, twice = model.parameters(), model.layers[1]

    def fn(x):
        h = twice(twice(model.layers[0](x)))
        return [model.layers[2](h), h[1], ps[4], l2_penalty(ps, 0.1) + h[0]]
    f = check_compiled(fn, ps, [([1.0, -2.0, 0.5],), ([0.25, 0.0, -1.0],), ([3.0, 1.0, 2.0],)])
    assert (True, True) in _writes_first(f) and (False, True) in _writes_first(f)
    b = check_vmap(lambda x: sum(fn(x)[1:], fn(x)[0]), ps,
                   [np.array([[1.0, -2.0, 0.5]]), np.array([[0.5, 1.0, 2.0], [0.0, -1.0, 1.0]])], "mean")
    assert (True, True) in _writes_first(b)


def test_a_backward_rerun_with_checks_after_direct_writes_starts_from_zero():
    """A loss whose forward is finite but whose gradient is not (sqrt(h * h) at h = 0 has slope
    inf * 0 = nan): the unchecked backward has already written weight gradients directly when the
    replay sees the nan and runs backward again with checks; the result is eager's, nan where eager
    has nan and the finite gradients of the other examples unchanged."""
    random.seed(2)
    model = MLP(2, [3, 2], activation="linear", output_activation="linear")
    ps = model.parameters()
    for p in ps[2::3]:
        p.data = 0.0                                   # zero biases: h = 0 at x = 0

    def fn(x):
        return sum(((v * v).sqrt() for v in model(x)), Value(0.0)) + l2_penalty(ps, 0.01)
    f = check_compiled(fn, ps, [([1.0, 2.0],), ([0.0, 0.0],), ([1.0, -1.0],), ([0.0, 0.0],)])
    assert (True, True) in _writes_first(f)
    check_vmap(fn, ps, [np.array([[0.0, 0.0]]), np.array([[1.0, 2.0], [0.0, 0.0]]), np.array([[1.0, 0.5]])], "mean")


def test_a_grid_of_parameters_by_parameters_writes_one_operand_and_adds_the_other():
    """Dot products of weight rows with weight rows (a Gram matrix, a shared sum whose grid's two
    operands are the same Values): the first operand is written, the second added on top, so each
    weight gets both halves of d(w.w), compiled and batched, as eager."""
    W = [[Value(v) for v in row] for row in [[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]]]
    U = [[Value(v) for v in row] for row in [[0.3, 0.7, -0.2], [-1.1, 0.4, 0.9], [0.6, 0.6, 0.1]]]
    captured = [v for row in W + U for v in row]

    def dot(a, b):
        return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]

    def fn(x):
        G = [[dot(W[i], W[j]) for j in range(2)] for i in range(2)]
        H = [[dot(W[i], U[j]) for j in range(3)] for i in range(2)]
        return [G[0][0] * x + G[0][1] + G[1][0] * 2.0 + G[1][1] * x, sum(H[0], H[1][0]) * x, G[1][1]]
    f = check_compiled(fn, captured, [(1.0,), (2.0,), (-0.5,)])
    shared = [k for k in f._program.kernels if getattr(k, "grid", None) is not None and not k.example]
    assert any(k.writes_first == (True, False) for k in shared)
    check_vmap(lambda x: sum(fn(x[0])[1:], fn(x[0])[0]), captured, [np.array([[1.0]]), np.array([[1.0], [2.0]])], "sum")


# --- 2. the bias adder with a constant slope (a float) ------------------------------------------------

def test_a_users_rule_with_a_constant_slope_on_a_value_every_member_shares():
    """A rule whose backward gives a plain float (0.0: a stop-gradient) for a Value that every
    member of its group reads (the scatter sums over the members as a product with ones) adds 0,
    as eager does, instead of failing on the float's missing .shape."""
    stop = chainrule.primitive("adversarial_stop", lambda m, a: a, lambda m, g, out, a: (0.0,), replace=True)
    w, v = Value(0.75), Value(-1.5)

    def fn(x):
        return [stop(w) * x + stop(w) * 2.0 + w * x, stop(v) + stop(v) * x]
    check_compiled(fn, [w, v], [(1.0,), (2.0,), (-0.5,)])


def test_a_gradient_taken_inside_fn_through_relus_of_one_shared_value():
    """The same without a rule of one's own: grad(create_graph=True) of relu(w) used twice builds
    select nodes whose condition's slope is the float 0.0, read by every member of its group."""
    w = Value(0.75)

    def fn(x):
        r = w.relu() * x + w.relu() * x * x + (w ** 2.0) * x
        (gw,) = chainrule.grad(r, [w], create_graph=True)
        return gw * x
    check_compiled(fn, [w], [(1.0,), (2.0,), (-1.0,)])
    w.data = -0.25                                     # relu's other side, read live
    check_compiled(fn, [w], [(1.0,), (3.0,)])


# --- 3. Values of other threads ----------------------------------------------------------------------

@pytest.mark.parametrize("batched", [False, True], ids=["compile", "vmap"])
def test_a_value_a_worker_made_before_the_call_is_not_refused(batched):
    """A Value that a worker thread made before fn was recorded (a parameter built by a loader
    thread, here an op's result) is captured like any other, while that worker goes on making and
    dropping Values of its own (whose ids the recording collects): the recording succeeds and the
    replay follows the Value's .data as eager does."""
    made, ready, stop = [], threading.Event(), threading.Event()

    def worker():
        made.append(Value(2.0) * Value(1.5))
        ready.set()
        while not stop.is_set():
            (Value(0.5) * 3.0).tanh()               # made and dropped at once: ids get reused
    t = threading.Thread(target=worker)
    t.start()
    ready.wait()
    (w,) = made

    def fn(x):
        return (w * x[0] + x[1]).tanh()
    try:
        for _ in range(2):
            if batched:
                check_vmap(fn, [w], [np.array([[1.0, 2.0], [0.5, -1.0]]), np.array([[0.25, 0.0]])], "sum")
            else:
                check_compiled(fn, [w], [([1.0, 2.0],), ([0.5, -1.0],)])
            w.data = -0.5
    finally:
        stop.set()
        t.join()
    assert gradmode._elsewhere == ()


def test_nested_blocks_each_see_their_thread_and_the_other_threads_values():
    """Nested track_created blocks: both lists get the thread's own Values, both ``elsewhere``
    lists get the id of a worker's; closing them leaves no list behind."""
    from chainrule.engine import track_created

    a, theirs = Value(1.0), []
    with track_created() as outer:
        b = a * 2
        with track_created() as inner:
            c = b + 1
            t = threading.Thread(target=lambda: theirs.append(a * 5))
            t.start()
            t.join()
        d = c * c
    def has(made, v):
        return any(x is v for x in made)
    assert has(outer, b) and has(outer, c) and has(outer, d) and has(inner, c)
    assert not has(inner, b) and not has(inner, d) and not has(outer, theirs[0])
    assert id(theirs[0]) in outer.elsewhere and id(theirs[0]) in inner.elsewhere      # ids, not Values
    assert id(c) not in outer.elsewhere and id(c) not in inner.elsewhere
    assert gradmode._elsewhere == ()


@pytest.mark.parametrize("batched", [False, True], ids=["compile", "vmap"])
def test_threads_calling_one_replay_at_once_sum_every_gradient(batched):
    """Three threads call one replay of a penalised model (matrix products writing their gradient
    rows directly, each call in buffers of its own) and backward() 40 times each, compiled on one
    example or batched over 1 or 2: the Values' gradients are eager's sum over all the calls."""
    random.seed(4)
    model = MLP(3, [5, 4, 1])
    ps = model.parameters()

    def loss(x):
        return (model(x) - 1.0) ** 2 + l2_penalty(ps, 0.01)
    replay = vmap(loss, reduce="mean") if batched else compile(loss)
    rng = np.random.default_rng(0)
    calls = [[rng.normal(size=(1 + k % 2, 3)) if batched else rng.normal(size=3).tolist() for k in range(40)]
             for _ in range(3)]
    replay(calls[0][0])

    def work(part):
        for x in part:
            replay(x).backward()
    for p in ps:
        p.grad = 0.0
    threads = [threading.Thread(target=work, args=(part,)) for part in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    replayed = [p.grad for p in ps]
    for p in ps:
        p.grad = 0.0
    for part in calls:
        for x in part:
            rows = x if batched else [x]
            (sum((loss([Value(v) for v in r]) for r in rows), Value(0.0)) * (1.0 / len(rows))).backward()
    assert_close(replayed, [p.grad for p in ps])


# --- 4. the optimizer around the array threshold ------------------------------------------------------

@pytest.mark.parametrize("n", [63, 64, 65, 200])
@pytest.mark.parametrize("name", ["sgd", "nesterov", "adam", "adamw"])
def test_optimizers_match_torch_on_either_side_of_the_array_threshold(name, n):
    """step() with the library's own thresholds (floats below 64 parameters, one whole array from
    64 on) gives torch.optim's parameters after every one of 6 steps, within 1e-12."""
    torch = pytest.importorskip("torch")
    ours_of = {"sgd": lambda ps: SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01),
               "nesterov": lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
               "adam": lambda ps: Adam(ps, lr=0.05, weight_decay=0.1),
               "adamw": lambda ps: AdamW(ps, lr=0.05)}
    theirs_of = {"sgd": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01),
                 "nesterov": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
                 "adam": lambda ps: torch.optim.Adam(ps, lr=0.05, weight_decay=0.1),
                 "adamw": lambda ps: torch.optim.AdamW(ps, lr=0.05)}
    rng = np.random.RandomState(n)
    start = rng.uniform(-2, 2, size=n)
    ours = [Value(float(x)) for x in start]
    theirs = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    opt, topt = ours_of[name](ours), theirs_of[name]([theirs])
    for _ in range(6):
        grad = rng.normal(scale=3.0, size=n)
        for p, g in zip(ours, grad):
            p.grad = float(g)
        theirs.grad = torch.tensor(grad, dtype=torch.float64)
        opt.step()
        topt.step()
        np.testing.assert_allclose([p.data for p in ours], theirs.detach().numpy(), rtol=0, atol=1e-12)
    assert all(type(p.data) is float for p in ours)
    assert opt._rule_runs_on_arrays is (True if n >= 64 else None)     # the path each side takes
