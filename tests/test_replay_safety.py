"""The compiled replay never gives a silent wrong answer (issue 13): each blind spot is either
computed as eager computes it or refused with a named error."""

import math
import random
import threading

import numpy as np
import pytest

from chainrule import MLP, Value, no_grad, primitive
from chainrule.replay import NotReplayableError, ReplayMismatchError, compile, vmap
from replay_checks import assert_close


# --- 1. captured interior nodes ----------------------------------------------------------------

def test_captured_interior_node_is_read_live_and_its_gradient_continues_below():
    """A node made by an op before compile (w3 = w * 3) is read at every call, and backward gives
    it and the leaf below it the gradients eager backward gives."""
    w = Value(1.5)
    w3 = w * 3
    f = compile(lambda x: (w3 * x).tanh() + w * x)
    f(2.0)
    w3.data = 5.0
    out = f(2.0)
    assert out.data == pytest.approx(math.tanh(10.0) + 3.0, rel=1e-15)
    out.backward()
    replayed = (w3.grad, w.grad)
    w.grad = w3.grad = 0.0
    eager = (w3 * Value(2.0)).tanh() + w * Value(2.0)
    eager.backward()
    assert_close(replayed, (w3.grad, w.grad))


def test_parameters_made_by_ops_train_compiled_as_eager():
    """A model whose weights are interior nodes (a scaled initial weight) trains to the same loss
    compiled as eager, step for step (the silent 0.000000 vs 1.181109 of issue 13)."""
    def run(compiled):
        base = [Value(0.3), Value(-0.2)]
        weights = [b * 2 for b in base]          # interior nodes, made before compile

        def loss(x, y):
            return (weights[0] * x + weights[1] - y) ** 2
        step = compile(loss) if compiled else (lambda x, y: loss(Value(x), Value(y)))
        losses = []
        for k in range(30):
            out = step(float(k % 3), 1.0)
            for w in weights:
                w.grad = 0.0
            out.backward()
            for w in weights:
                w.data -= 0.05 * w.grad
            losses.append(out.data)
        return losses, [w.data for w in weights]
    eager, compiled = run(False), run(True)
    assert_close(compiled[0], eager[0])
    assert_close(compiled[1], eager[1])
    assert eager[0][-1] < eager[0][0] / 10


def test_recording_does_not_scan_the_heap(monkeypatch):
    """Telling captured Values from new ones uses the engine's track_created, not gc.get_objects."""
    import gc

    def refuse():
        raise AssertionError("the replay scanned the heap")
    monkeypatch.setattr(gc, "get_objects", refuse)
    w = Value(2.0)
    f = compile(lambda x: w * x)
    f(1.0)
    f(3.0).backward()
    assert w.grad == 3.0


# --- 2. several outputs -------------------------------------------------------------------------

def test_backward_of_one_output_does_not_touch_another():
    """Backward of output 1 gives eager's gradients even where output 0's derivative is nan (a
    negative base's log) or would divide by zero (sqrt at 0)."""
    p, q = Value(-2.0), Value(2.0)
    f = compile(lambda x: [p ** q, q * x])
    f(3.0)
    f(3.0)[1].backward()
    assert (q.grad, p.grad) == (3.0, 0.0)
    w = Value(1.0)
    g = compile(lambda x: [(w * x).sqrt(), w * x * 2])
    g(1.0)
    g(0.0)[1].backward()
    assert w.grad == 0.0
    w.grad = 0.0
    g(0.0)[0].backward()                 # sqrt's slope at 0 is inf; times x = 0: nan, as eager
    eager_w = Value(1.0)
    (eager_w * Value(0.0)).sqrt().backward()
    assert math.isnan(w.grad) and math.isnan(eager_w.grad)


# --- 3. arguments that are not numbers ------------------------------------------------------------

def test_values_inside_arguments_and_strings_are_refused():
    """A Value inside a list argument, and text (never parsed as a number), are named errors."""
    f = compile(lambda xs: xs[0] * 2)
    with pytest.raises(TypeError, match=r"argument 0\[1\] is a Value.*argument 0\[1\]\.data"):
        f([1.0, Value(2.0)])
    with pytest.raises(TypeError, match="holds strings"):
        f(["1.5"])
    f([1.0])
    with pytest.raises(TypeError, match="string '1.5'"):
        f("1.5")
    with pytest.raises(TypeError, match="holds strings"):
        f(["1.5"])
    with pytest.raises(TypeError, match=r"argument 0\[0\] is a Value"):
        f([Value(1.0)])


# --- 4. nan and inf -----------------------------------------------------------------------------

@pytest.mark.parametrize("x", [math.nan, math.inf, -math.inf, 0.0, -0.0])
def test_non_finite_numbers_replay_as_eager(x):
    """relu, tanh, sigmoid, exp and the products around them give eager's numbers and gradients
    for nan, inf and signed zeros (the element is recomputed with the scalar rule)."""
    w = Value(0.5)

    def fn(v):
        return (v * w).relu() + (v * w).tanh() + (v * w).sigmoid() + ((v * w).relu() * 0.0).exp()
    f = compile(fn)
    f(1.0)
    out = f(x)
    out.backward()
    replayed = (out.data, w.grad)
    w.grad = 0.0
    eager = fn(Value(x))
    eager.backward()
    assert_close(replayed, (eager.data, w.grad))


def test_errors_where_eager_raises():
    """Where eager raises for a finite input (log of 0, exp overflow) the replay raises the same error."""
    w = Value(1.0)
    f = compile(lambda x: (w * x).log() + (w * x).exp())
    f(1.0)
    with pytest.raises(ValueError, match="log"):
        f(0.0)
    with pytest.raises(OverflowError, match="exp"):
        f(1000.0)


# The replay looks for non-finite numbers once per pass, over whole buffers, and only then runs the
# kernels with their per-kernel checks (run.py): these calls switch between finite and non-finite
# numbers arriving every way they can (a fed input, a live Value changed between calls, a sum that
# overflows, a gradient that does), on the same reused buffers, and must give eager's every number.

def _replay_against_eager(ws, b, fn, calls, batched=False):
    """Run ``calls`` (each ``(inputs, w data)``) through compile(fn) (or vmap(fn, reduce='sum')) and
    eagerly, comparing the output and every captured Value's gradient after each call."""
    params = ws + [b]
    f = vmap(fn, reduce="sum") if batched else compile(fn)
    first = calls[0][0]
    f(np.array(first)) if batched else f(first)          # the recording call
    finite = []
    for k, (xs, w_data) in enumerate(calls):
        for w, d in zip(ws, w_data):
            w.data = d
        for p in params:
            p.grad = 0.0
        out = f(np.array(xs)) if batched else f(xs)
        out.backward()
        replayed = [out.data] + [p.grad for p in params]
        for p in params:
            p.grad = 0.0
        eager = sum((fn([Value(x) for x in row]) for row in xs), Value(0.0)) if batched else fn(
            [Value(x) for x in xs])
        eager.backward()
        assert_close(replayed, [eager.data] + [p.grad for p in params])
        finite.append(all(map(math.isfinite, replayed)))
    assert not all(finite) and finite[-1], finite        # the case meets nan or inf, and leaves it


def _layer_fn(ws, b):
    def fn(xs):
        s = sum((w * x for w, x in zip(ws, xs)), b)      # a sum of products: a SumDot kernel
        return s.relu() + s.tanh() + s.sigmoid() + (s.relu() * 0.0).exp() + (ws[0] * ws[0]).sqrt()
    return fn


NON_FINITE_CALLS = {
    "nan input": [([1.0, 2.0], (0.5, -0.25)), ([math.nan, 2.0], (0.5, -0.25)), ([1.0, 2.0], (0.5, -0.25))],
    "inf input": [([1.0, 2.0], (0.5, -0.25)), ([-math.inf, 2.0], (0.5, -0.25)), ([3.0, 2.0], (0.5, -0.25))],
    "live Value inf": [([1.0, 2.0], (0.5, -0.25)), ([1.0, 2.0], (math.inf, -0.25)), ([1.0, 2.0], (0.5, -0.25))],
    "live Value nan": [([1.0, 2.0], (0.5, -0.25)), ([1.0, 2.0], (0.5, math.nan)), ([1.0, -2.0], (0.5, 0.75))],
    "sum overflows": [([1.0, 2.0], (1.5, 1.5)), ([1e308, 1e308], (1.5, 1.5)), ([-1e308, -1e308], (1.5, 1.5)),
                      ([1.0, 2.0], (1.5, 1.5))],
    "gradient overflows": [([1.0, 2.0], (0.5, -0.25)), ([1.0, 2.0], (1e200, 1e200)), ([1.0, 2.0], (0.0, 0.25)),
                           ([1.0, 2.0], (0.5, -0.25))],
}


@pytest.mark.parametrize("batched", [False, True], ids=["compile", "vmap"])
@pytest.mark.parametrize("case", list(NON_FINITE_CALLS))
def test_non_finite_numbers_between_finite_calls_replay_as_eager(case, batched):
    """Calls that bring nan or inf (a fed input, a live Value set between calls, a sum or a gradient
    that overflows) between finite ones give eager's outputs and gradients, call after call."""
    ws, b = [Value(0.5), Value(-0.25)], Value(0.1)
    calls = NON_FINITE_CALLS[case]
    if batched:     # each call a batch: the case's numbers in one row, finite ones in the other
        calls = [([xs, [0.5, 1.5]], w_data) for xs, w_data in calls]
    _replay_against_eager(ws, b, _layer_fn(ws, b), calls, batched)


def test_errors_where_eager_raises_between_finite_calls():
    """A live Value changed between calls so that exp overflows or log meets 0 raises eager's error
    (and a fed input that overflows a sum into exp does), and the next finite call is exact again."""
    w, c = Value(1.0), Value(2.0)
    f = compile(lambda xs: (w * xs[0] + w * xs[1]).exp() + (c - 1.0).log())
    assert f([1.0, 2.0]).data == pytest.approx(math.exp(3.0) + 0.0)
    w.data = 400.0
    with pytest.raises(OverflowError, match="exp"):
        f([1.0, 2.0])
    w.data, c.data = 1.0, 1.0
    with pytest.raises(ValueError, match="log"):
        f([1.0, 2.0])
    c.data = 2.0
    with pytest.raises(OverflowError, match="exp"):
        f([1e308, 1e308 * 0.5])     # a finite input: eager raises in exp, not in the sum (inf)
    out = f([0.5, 0.25])
    out.backward()
    assert out.data == math.exp(0.75) and w.grad == pytest.approx(0.75 * math.exp(0.75), rel=1e-15)


def test_a_user_rule_whose_backward_raises_on_floats_raises_in_the_replay():
    """A registered rule whose backward divides (m.div raises on floats at 0, numpy gives inf) raises
    eager's ZeroDivisionError in the replay's backward too, though every forward number is finite:
    for the gradient of a Value, and for the term of a fed input that no gradient needs."""
    from chainrule.primitives import PRIMITIVES

    before = set(PRIMITIVES)
    try:
        root = primitive("root_div_test", lambda m, a: m.sqrt(a), lambda m, g, out, a: (m.div(g, 2.0 * out),))
        scaled = primitive("scaled_div_test", lambda m, a, x: a * x,
                           lambda m, g, out, a, x: (g * x, m.div(g * out, x)))
        w = Value(4.0)
        for fn, bad in ((lambda xs: root(w * xs[0]) + w, [0.0]), (lambda xs: scaled(w, xs[0]) + w, [0.0])):
            f = compile(fn)
            f([1.0])
            for xs in ([1.0], bad, [2.0]):
                w.grad = 0.0
                out = f(xs)
                assert all(map(math.isfinite, (out.data,) + tuple(out._run.buffer.E) + tuple(out._run.buffer.S)))
                eager = fn([Value(x) for x in xs])
                if xs is bad:
                    with pytest.raises(ZeroDivisionError):
                        eager.backward()
                    with pytest.raises(ZeroDivisionError):
                        out.backward()
                    continue
                out.backward()
                replayed, w.grad = w.grad, 0.0
                eager.backward()
                assert replayed == pytest.approx(w.grad, rel=1e-15)
    finally:
        for name in set(PRIMITIVES) - before:
            del PRIMITIVES[name]


# --- 5. threads ---------------------------------------------------------------------------------

def test_no_built_in_backward_rule_raises_on_floats():
    """The replay skips the term of an input that no gradient needs (a fed input, a constant) for a
    built-in rule, because eager's scalar rule could only matter there by raising: none of the
    built-in backward rules does, at any number (they are written with the IEEE functions)."""
    import itertools

    from chainrule.mathspace import SCALAR
    from chainrule.primitives import BUILTIN, PRIMITIVES

    awkward = [0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 3.0, 1e-310, 1e308, -1e308, math.inf, -math.inf, math.nan]
    for name in sorted(BUILTIN):
        prim = PRIMITIVES[name]
        n = 1 if prim.kind == 3 else prim.n_inputs      # a constant-exponent row takes (a, k)
        args = awkward if n < 3 else awkward[::3]
        for xs in itertools.product(args, repeat=n + (prim.kind == 3)):
            for g in (1.0, -0.0, math.inf, math.nan):
                try:
                    out = prim.forward(SCALAR, *xs)
                except (ArithmeticError, ValueError):
                    out = math.nan                  # eager raises in forward; backward never runs
                terms = prim.backward(SCALAR, g, out, *xs)    # raises here only if a rule can
                assert len(terms) == len(xs) - (prim.kind == 3), name


def test_a_shared_bias_over_a_compiled_batch_sums_nan_and_inf_as_eager():
    """A bias that every example of a compiled call shares gains the sum of their terms (one BLAS
    product with ones): an example whose term is nan or inf makes the bias gradient nan or inf as
    eager's one-by-one sum does, and finite batches agree with eager to rounding."""
    layer = MLP(3, [4], activation="linear", output_activation="linear").layers[0]
    params = layer.parameters()

    def fn(X):                  # o * o: an example whose output is inf or nan sends inf or nan back
        return sum((o * o for x in X for o in layer(x)), Value(0.0))

    f = compile(fn)
    batches = [[[1.0, 2.0, 3.0]] * 6, [[1.0, 2.0, 3.0], [math.inf, 0.0, 1.0], [0.5, -1.0, 2.0]] * 2,
               [[1.0, 2.0, 3.0], [math.nan, 0.0, 1.0]] * 3, [[0.25, -0.5, 1.5]] * 6]
    for X in batches:
        for p in params:
            p.grad = 0.0
        f(X).backward()
        replayed = [p.grad for p in params]
        for p in params:
            p.grad = 0.0
        fn([[Value(v) for v in x] for x in X]).backward()
        assert_close(replayed, [p.grad for p in params])


def test_two_threads_accumulate_every_gradient():
    """Two threads calling a compiled function and backward() 200 times each add every gradient:
    the total equals the exact sum (each call has its own buffers; adding into .grad is locked)."""
    w = Value(0.25)
    f = compile(lambda x: (w * x) * x)
    f(1.0)
    xs = [[float(i % 7) for i in range(200)], [float(i % 5) + 0.5 for i in range(200)]]

    def work(values):
        for x in values:
            f(x).backward()
    threads = [threading.Thread(target=work, args=(v,)) for v in xs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert w.grad == pytest.approx(sum(x * x for v in xs for x in v), rel=1e-12)


@pytest.mark.parametrize("batched", [False, True], ids=["compile", "vmap"])
def test_values_made_in_worker_threads_during_recording_are_refused(batched):
    """fn that builds part of its graph in a thread pool (x * w per input), or uses a Value a worker
    made during the call, is refused with a named error: the recording sees only the calling
    thread's ops, and would otherwise replay the recorded number forever (6.0 for every input)."""
    from concurrent.futures import ThreadPoolExecutor

    from chainrule import gradmode

    w = Value(2.0)
    with ThreadPoolExecutor(2) as pool:
        def products(xs):
            return sum(pool.map(lambda x: x * w, xs), Value(0.0))

        def worker_leaf(xs):
            return pool.submit(lambda: Value(3.0)).result() * xs[0] + w

        def worker_params_only(xs):                 # no input below it: still made during the call
            return pool.submit(lambda: w * w).result() * xs[0]

        for fn in (products, worker_leaf, worker_params_only):
            replay = vmap(fn, reduce="sum") if batched else compile(fn)
            arg = np.array([[1.0, 2.0], [3.0, 4.0]]) if batched else [1.0, 2.0]
            with pytest.raises(NotReplayableError, match="another thread made while compile recorded"):
                replay(arg)
    assert gradmode._elsewhere == ()                # nothing kept once the recordings are over


def test_another_thread_building_graphs_while_fn_records_changes_nothing():
    """A thread that trains eagerly while another records fn makes Values of its own all along:
    they are not fn's, the recording succeeds, and the replay gives eager's numbers."""
    w, stop, made = Value(0.5), threading.Event(), []

    def busy():
        v = Value(1.0)
        while not stop.is_set():
            made.append((v * v + 1.0).tanh())
            del made[:-10]
    t = threading.Thread(target=busy)
    t.start()
    try:
        f = compile(lambda xs: (w * xs[0] + xs[1]).tanh())
        for xs in ([1.0, 2.0], [0.5, -3.0]):
            out = f(xs)
            assert out.data == pytest.approx(math.tanh(0.5 * xs[0] + xs[1]), rel=1e-15)
    finally:
        stop.set()
        t.join()
    assert made


def test_predict_while_another_thread_trains(monkeypatch):
    """predict(compiled=True) and evaluate in one thread while fit(compiled=True) trains the same
    model in another: until fit writes the arrays back (at its end; the watcher is stopped just
    before that), every reading is exactly the model as it was when fit started, because a compiled
    fit keeps its weights in arrays (replay_checks=0: the eager re-run guard sets the weights for
    its duration). Afterwards predict, compiled or not, sees the trained model."""
    from chainrule.data import make_moons
    from chainrule.steps import ReplayedSteps
    from chainrule.train import evaluate, fit, predict
    random.seed(0)
    X, y = make_moons(64, noise=0.1, seed=0)
    model = MLP(2, [8, 1], activation="relu", output_activation="linear")
    before = (predict(model, X), evaluate(model, X, y))
    done = threading.Event()
    seen, errors = [], []

    def watch():
        try:
            while not done.is_set():
                seen.append((predict(model, X, compiled=True), evaluate(model, X, y)))
        except Exception as err:        # reported below
            errors.append(err)
    watcher = threading.Thread(target=watch)
    real_sync = ReplayedSteps.sync

    def sync_after_the_watcher_stops(self):
        done.set()
        watcher.join()
        real_sync(self)
    monkeypatch.setattr(ReplayedSteps, "sync", sync_after_the_watcher_stops)
    watcher.start()
    try:
        fit(model, X, y, steps=60, batch_size=16, compiled=True, progress=False, seed=0, replay_checks=0)
    finally:
        done.set()
        watcher.join()
    assert not errors and seen
    for scores, result in seen:
        np.testing.assert_allclose(scores, before[0], rtol=1e-12, atol=1e-12)
        assert result == before[1]
    after = predict(model, X)
    assert not np.allclose(after, before[0])
    np.testing.assert_allclose(predict(model, X, compiled=True), after, rtol=1e-12, atol=1e-12)


# --- 6. deep outputs ----------------------------------------------------------------------------

def test_output_nested_3000_lists_deep():
    """An output nested 3,000 lists deep comes back nested the same way, without RecursionError."""
    w = Value(2.0)

    def fn(x):
        out = w * x
        for _ in range(3000):
            out = [out]
        return out
    f = compile(fn)
    f(1.0)
    result = f(4.0)
    for _ in range(3000):
        assert isinstance(result, list) and len(result) == 1
        result = result[0]
    assert result.data == 8.0
    result.backward()
    assert w.grad == 4.0


# --- 7. what recording cannot see --------------------------------------------------------------

def test_constant_made_from_a_values_number_is_refused():
    """Value(x.data) and max over .data, made while recording, are NotReplayableError."""
    w = Value(0.5)
    with pytest.raises(NotReplayableError, match=r"Value\(x.data\)"):
        compile(lambda x: Value((w * x).data) * x)(2.0)
    with pytest.raises(NotReplayableError, match="an input"):
        compile(lambda x: Value(x.data) * w)(2.0)

    def max_of_data(xs):
        return Value(max(v.data for v in xs)) * w + xs[0]
    with pytest.raises(NotReplayableError):
        compile(max_of_data)([1.0, 3.0])


def test_closure_op_is_refused_and_a_registered_primitive_replays():
    """A node whose derivative is a closure is a NotReplayableError naming chainrule.primitive; the
    same op registered as a table row replays on arrays and equals eager."""
    w = Value(0.5)

    def cube(v):
        out = Value(v.data ** 3, (v,), "cube")

        def _backward():
            v.grad += 3 * v.data ** 2 * out.grad
        out._backward = _backward
        return out
    with pytest.raises(NotReplayableError, match="chainrule.primitive"):
        compile(lambda x: cube(w * x))(2.0)
    cube_op = primitive("cube_test_replay", lambda m, a: a * a * a, lambda m, g, out, a: (g * 3 * a * a,),
                        replace=True)
    f = compile(lambda x: cube_op(w * x) + w)
    f(1.0)
    out = f(2.0)
    out.backward()
    assert (out.data, w.grad) == (1.5, 7.0)          # 3 (w x)^2 x + 1 at w x = 1, x = 2


def test_eager_rerun_guard_catches_value_dependent_code():
    """checks=N re-runs fn eagerly on the first N replays and raises ReplayMismatchError naming the
    difference for an if on .data and for a no_grad() baseline; without them the replay is silent."""
    w = Value(1.0)

    def branchy(x):
        return w * x if x.data > 0 else w * x * -1.0
    f = compile(branchy, checks=3)
    f(1.0)
    f(2.0)                                       # same branch: agrees
    with pytest.raises(ReplayMismatchError, match="output 0 is -2.0 replayed but 2.0 eagerly"):
        f(-2.0)

    def baseline(x):
        with no_grad():
            base = w * x
        return w * x - base
    g = compile(baseline, checks=2)
    g(1.0)
    with pytest.raises(ReplayMismatchError, match="no_grad"):
        g(3.0)


def test_model_changed_after_recording_is_refused():
    """A compiled model refuses to run once a layer is appended, an activation changes or a
    parameter object is replaced; its weights changing needs nothing."""
    from chainrule.nn import Layer
    random.seed(0)
    model = MLP(2, [3, 1])
    f = compile(model)
    f([1.0, 2.0])
    model.layers[0].neurons[0].w[0].data = 0.25
    assert f([1.0, 2.0]).data == pytest.approx(model([1.0, 2.0]).data, rel=1e-12)
    model.layers[0].neurons[1].activation = "relu"
    with pytest.raises(ReplayMismatchError, match="the model changed"):
        f([1.0, 2.0])
    model.layers[0].neurons[1].activation = "tanh"
    f([1.0, 2.0])
    model.layers[1].neurons[0].b = Value(0.0)
    with pytest.raises(ReplayMismatchError, match="the model changed"):
        f.batch([[1.0, 2.0]])
    g = vmap(model, reduce=None)
    g([[1.0, 2.0]])
    model.layers.append(Layer(1, 1))
    with pytest.raises(ReplayMismatchError, match="the model changed"):
        g([[1.0, 2.0]])


def test_fit_guard_and_structure_checks():
    """compiled fit's first replayed steps are checked eagerly (a model whose forward branches on
    .data is caught), and a callback that changes the model's structure is refused."""
    from chainrule.data import make_moons
    from chainrule.train import fit
    X, y = make_moons(32, noise=0.1, seed=0)

    class Branchy(MLP):
        def __call__(self, x):
            out = super().__call__(x)
            return out if x[0].data > 0.5 else out * 0.0
    random.seed(1)
    with pytest.raises(ReplayMismatchError, match="disagrees with running fn eagerly"):
        fit(Branchy(2, [8, 1], activation="relu", output_activation="linear"), X, y, steps=5, batch_size=8,
            compiled=True, progress=False, seed=0)

    def replace_a_weight(k, history, model):
        model.layers[0].neurons[0].w[0] = Value(0.5)
    random.seed(1)
    with pytest.raises(ReplayMismatchError, match="callback changed the model"):
        fit(MLP(2, [4, 1]), X, y, steps=3, compiled=True, progress=False, callbacks=[replace_a_weight])


# --- found by an adversarial pass over the replay -----------------------------------------------------

def _plain_sgd(params):
    class PlainSGD:                   # an optimizer of one's own: step() and zero_grad() only
        lr = 0.05

        def zero_grad(self):
            for p in params:
                p.grad = 0.0

        def step(self):
            for p in params:
                p.data -= 0.05 * p.grad
    return PlainSGD()


@pytest.mark.parametrize("kind", ["own loss function", "own optimizer"])
def test_a_callback_that_changes_the_model_is_refused_on_every_compiled_path(kind):
    """Whole-batch replays and optimizers without arrays refuse a model changed mid-fit, like the array path."""
    import random as _random

    from chainrule import MLP, fit
    from chainrule.losses import mse_loss
    from chainrule.replay import ReplayMismatchError

    X = np.random.default_rng(0).normal(size=(20, 3))
    y = np.where(X[:, 0] > 0, 1.0, -1.0)

    def relinearize(k, history, model):
        if k == 2:
            for n in model.layers[0].neurons:
                n.activation = "linear"
    _random.seed(5)
    model = MLP(3, [4, 1])
    loss = (lambda s, t: mse_loss(s, t)) if kind == "own loss function" else "mse"
    opt = "adam" if kind == "own loss function" else _plain_sgd(model.parameters())
    with pytest.raises(ReplayMismatchError, match="callback changed the model"):
        fit(model, X, y, loss=loss, optimizer=opt, steps=6, compiled=True, seed=1, progress=False,
            log_every=None, callbacks=[relinearize])


def test_replay_checks_guard_a_loss_function_of_ones_own():
    """fit(compiled=True) with a custom loss re-runs it eagerly (replay_checks, on by default) and catches an if on .data."""
    import random as _random

    from chainrule import MLP, Adam, fit
    from chainrule.replay import ReplayMismatchError

    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 3))
    y = np.where(X[:, 0] > 0, 1.0, -1.0)

    def huberish(scores, targets):       # quadratic far from the target, 10x flatter near it: value-dependent
        total = 0.0
        for s, t in zip(scores, targets):
            d = s - t
            total = total + (d * d if abs(d.data) > 0.5 else d * d * 0.1)
        return total * (1.0 / len(scores))
    _random.seed(5)
    model = MLP(3, [4, 1])
    with pytest.raises(ReplayMismatchError, match="disagrees with running fn eagerly"):
        fit(model, X, y, loss=huberish, optimizer=Adam(model.parameters(), lr=0.1), steps=30, compiled=True,
            seed=1, progress=False, log_every=None)


def test_checks_work_for_list_outputs_and_functions_that_take_gradients():
    """compile(fn, checks=N) accepts fn returning a list, and fn calling chainrule.grad (no false mismatch)."""
    from chainrule import grad, vmap

    w = Value(2.0)
    f = compile(lambda x: [w * x, w + x], checks=2)
    f(1.0)
    assert [r.data for r in f(3.0)] == [6.0, 5.0]

    u = Value(0.7)

    def slope(x):
        (d,) = grad((u * x).tanh(), [x], create_graph=True)
        return d
    g = compile(slope, checks=2)
    g(1.0)
    assert g(2.0).data == pytest.approx(slope(Value(2.0)).data, rel=1e-12)
    h = vmap(lambda x: slope(x[0]) ** 2, reduce="mean", checks=2)
    h(np.array([[1.0], [2.0]]))
    expected = (slope(Value(1.0)).data ** 2 + slope(Value(2.0)).data ** 2) / 2
    assert h(np.array([[1.0], [2.0]])).data == pytest.approx(expected, rel=1e-12)


def test_compiled_predict_keeps_no_model_alive():
    """predict(compiled=True)'s kept recording holds its model weakly: a dropped model is freed."""
    import gc
    import weakref

    from chainrule import MLP, predict

    model = MLP(2, [3, 1])
    predict(model, np.zeros((4, 2)), compiled=True)
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


def test_a_user_rule_with_a_python_if_names_itself_in_the_replay():
    """A primitive whose rule uses a Python ``if`` works on floats but not on arrays: the replay names it."""
    from chainrule import primitive
    from chainrule.primitives import PRIMITIVES

    before = set(PRIMITIVES)
    try:
        leaky = primitive("leaky_if", lambda m, a: a if a > 0 else 0.1 * a,
                          lambda m, g, out, a: (g if a > 0 else 0.1 * g,))
        f = compile(lambda x: leaky(x[0]) + leaky(x[1] * 2))
        with pytest.raises(TypeError, match=r"'leaky_if' on arrays.*m\.where"):
            f([1.0, -1.0])
            f.batch(np.array([[1.0, -1.0], [0.5, 2.0]]))
    finally:
        for name in set(PRIMITIVES) - before:
            del PRIMITIVES[name]


def test_arithmetic_on_a_replayed_result_is_a_named_error():
    """``result + 1`` or ``sum(results)`` on ReplayValues says to do the arithmetic inside fn, or use .data."""
    w = Value(2.0)
    f = compile(lambda x: [w * x, w + x])
    f(1.0)
    a, b = f(3.0)
    for attempt in (lambda: a + 1, lambda: sum([a, b]), lambda: 2 * a, lambda: -a):
        with pytest.raises(TypeError, match="inside the compiled function, or use .data"):
            attempt()
