"""vmap and compiled fit: one example recorded, the batch replayed, parameters in arrays (issue 9)."""

import random

import numpy as np
import pytest

from chainrule import MLP, Value
from chainrule.data import make_blobs, make_moons
from chainrule.losses import l2_penalty, softmax_cross_entropy
from chainrule.optim import SGD, Adam, AdamW
from chainrule.replay import ReplayMismatchError, vmap
from chainrule.replay.kernels import SumDot
from chainrule.train import fit, predict


def recorded_nodes(monkeypatch) -> list:
    """Spy on vmap's recordings: the returned list gets each recording's node count."""
    from chainrule.replay import Batched
    counts = []
    real = Batched._record

    def record(self, arrays):
        real(self, arrays)
        counts.append(self._program.n_nodes)
    monkeypatch.setattr(Batched, "_record", record)
    return counts


def test_recording_does_not_grow_with_the_batch(monkeypatch):
    """Recorded node counts for batch 8 and batch 512 are equal, through vmap and through fit."""
    random.seed(0)
    model = MLP(4, [6, 3], activation="relu", output_activation="linear")

    def example(x, t):
        return softmax_cross_entropy([model(x)], [t])
    rng = np.random.default_rng(0)
    sizes = []
    for n in (8, 512):
        f = vmap(example)
        f(rng.normal(size=(n, 4)), np.eye(3)[rng.integers(0, 3, n)])
        sizes.append(f._program.n_nodes)
    assert sizes[0] == sizes[1] > 0
    counts = recorded_nodes(monkeypatch)
    X, y = make_blobs(600, seed=0)
    for batch in (8, 512):
        fit(MLP(2, [6, 3], activation="relu", output_activation="linear"), X, y, loss="cross_entropy",
            steps=2, batch_size=batch, compiled=True, progress=False, seed=0, replay_checks=0)
    assert len(counts) == 2 and counts[0] == counts[1]


CASES = [("hinge", make_moons, 1, SGD, {"lr": 0.3, "momentum": 0.5}),
         ("bce", make_moons, 1, Adam, {"lr": 0.05}),
         ("mse", make_moons, 1, AdamW, {"lr": 0.05, "weight_decay": 0.1}),
         ("sse", make_moons, 1, SGD, {"lr": 0.01}),
         ("cross_entropy", make_blobs, 3, Adam, {"lr": 0.05})]


@pytest.mark.parametrize("loss, data, width, opt, kwargs", CASES)
def test_compiled_fit_equals_eager_fit_step_for_step(loss, data, width, opt, kwargs):
    """On small nets fit(compiled=True) and eager fit give the same loss at every step (1e-10),
    the same accuracies, test losses and final parameters, for every loss, with an L2 penalty and
    shuffled minibatches whose last one is smaller, and SGD with momentum, Adam and AdamW."""
    X, y = data(22, seed=1) if data is make_blobs else data(22, noise=0.1, seed=1)
    runs = []
    for compiled in (False, True):
        random.seed(5)
        model = MLP(2, [5, width], activation="tanh", output_activation="linear")
        h = fit(model, X, y, loss=loss, steps=12, batch_size=8, l2=1e-2, compiled=compiled, progress=False,
                seed=3, optimizer=opt(model.parameters(), **kwargs), X_test=X[:7], y_test=y[:7], log_every=4)
        runs.append((h, [p.data for p in model.parameters()], [p.grad for p in model.parameters()]))
    (eager, w_eager, g_eager), (comp, w_comp, g_comp) = runs
    np.testing.assert_allclose(comp.loss, eager.loss, rtol=1e-10, atol=1e-12)
    assert comp.accuracy == eager.accuracy
    np.testing.assert_allclose(comp.test_loss, eager.test_loss, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(w_comp, w_eager, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g_comp, g_eager, rtol=1e-9, atol=1e-12)


def test_callbacks_see_up_to_date_values_and_their_changes_count():
    """In a compiled fit a callback sees the weights of the step just taken, and a weight it sets
    is what the next step trains from, exactly as in eager fit."""
    X, y = make_moons(20, noise=0.1, seed=0)
    runs = []
    for compiled in (False, True):
        random.seed(2)
        model = MLP(2, [4, 1], activation="relu", output_activation="linear")
        seen = []

        def cb(k, history, m):
            seen.append(m.layers[0].neurons[0].w[0].data)
            if k == 3:
                m.layers[1].neurons[0].b.data = 0.5
        fit(model, X, y, steps=8, batch_size=8, compiled=compiled, progress=False, seed=0, callbacks=[cb],
            optimizer=Adam(model.parameters(), lr=0.1))
        runs.append((seen, [p.data for p in model.parameters()]))
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=1e-12)
    np.testing.assert_allclose(runs[1][1], runs[0][1], rtol=1e-10)


@pytest.mark.parametrize("nin, width", [(1, 1), (3, 7), (16, 64), (20, 129), (8, 300)])
def test_every_layer_is_one_matrix_product_at_every_width(nin, width):
    """Whatever the widths, each layer's weighted sums replay as one matrix product over the batch
    (the same number of groups at every size), equal to eager for batches of 1 to 1,024 rows."""
    random.seed(0)
    model = MLP(nin, [width, 3], activation="relu", output_activation="linear")
    f = vmap(model, reduce=None)
    X = np.random.default_rng(1).normal(size=(1024, nin))
    out = f(X)
    grids = [k for k in f._program.kernels if isinstance(k, SumDot) and k.grid is not None]
    assert len(grids) == 2 and f.n_groups == 3         # two matrix products and the relu
    for rows in (1, 5, 1024):
        expected = [[v.data for v in model(list(x))] for x in X[:rows][-3:]]
        np.testing.assert_allclose(f(X[:rows])[-3:], expected, rtol=1e-12, atol=1e-12)
    assert out.shape == (1024, 3)


def test_value_and_grad_on_arrays_reads_no_values():
    """value_and_grad(params) takes the parameters' numbers from an array and returns the gradient
    as an array equal to eager backward on the batch loss; it reads no Value's .data."""
    random.seed(0)
    model = MLP(3, [4, 2], activation="tanh", output_activation="linear")
    params = model.parameters()

    def example(x, t):
        return (model(x)[0] - t) ** 2 + l2_penalty(params, 0.1)
    step = vmap(example, reduce="mean").value_and_grad(params)
    data = np.array([p.data for p in params])
    X, y = np.random.default_rng(0).normal(size=(9, 3)), np.arange(9.0)
    loss, grad = step(data, X, y)
    eager = sum(((model(list(x))[0] - t) ** 2 for x, t in zip(X, y)), Value(0.0)) * (1 / 9) + l2_penalty(params, 0.1)
    eager.backward()
    np.testing.assert_allclose([loss] + list(grad), [eager.data] + [p.grad for p in params], rtol=1e-12)
    for p in params:
        p.data = 100.0                           # the arrays, not the Values, are the parameters
    np.testing.assert_allclose(step(data, X, y)[1], grad, rtol=1e-15)
    assert step.value(data, X, y) == loss


def test_vmap_named_errors():
    """A bad reduction, a row shape that differs from the recording, ragged batches, text and a
    function that returns no loss are named errors."""
    w = Value(0.5)
    with pytest.raises(ValueError, match="reduce must be"):
        vmap(lambda x: w * x[0], reduce="max")
    f = vmap(lambda x: w * x[0])
    f(np.ones((3, 2)))
    with pytest.raises(ReplayMismatchError, match=r"recorded rows of shape \(2,\), got rows of shape \(3,\)"):
        f(np.ones((3, 3)))
    with pytest.raises(ValueError, match="same number of rows"):
        vmap(lambda x, y: w * x[0] * y)(np.ones((3, 1)), np.ones(2))
    with pytest.raises(TypeError, match="holds strings"):
        f([["1", "2"]])
    with pytest.raises(TypeError, match="one example's loss"):
        vmap(lambda x: [w * x[0]])(np.ones((2, 1)))
    with pytest.raises(ValueError, match="needs a loss"):
        vmap(lambda x: w * x[0], reduce=None).value_and_grad([w])


def test_predict_keeps_its_recording_until_the_model_changes():
    """predict(compiled=True) records a model once, follows new weights, and records again after
    its structure changed."""
    from chainrule.nn import Layer
    from chainrule.train import _RECORDED_MODELS
    random.seed(0)
    model = MLP(2, [3, 1])
    X = np.random.default_rng(0).normal(size=(5, 2))
    predict(model, X, compiled=True)
    first = _RECORDED_MODELS[model][1]
    model.layers[0].neurons[0].b.data = 3.0
    np.testing.assert_allclose(predict(model, X, compiled=True), predict(model, X), rtol=1e-12)
    assert _RECORDED_MODELS[model][1] is first
    model.layers.append(Layer(1, 2))
    assert predict(model, X, compiled=True).shape == (5, 2)
    assert _RECORDED_MODELS[model][1] is not first


def test_compiled_fit_with_an_optimizer_of_ones_own():
    """An optimizer object with only step() and zero_grad() trains compiled through the Values
    (the replayed backward fills .grad), to the same losses as eager."""
    class Plain:
        def __init__(self, params):
            self.params, self.lr = params, 0.1

        def zero_grad(self):
            for p in self.params:
                p.grad = 0.0

        def step(self):
            for p in self.params:
                p.data -= self.lr * p.grad
    X, y = make_moons(20, noise=0.1, seed=0)
    runs = []
    for compiled in (False, True):
        random.seed(3)
        model = MLP(2, [4, 1], activation="relu", output_activation="linear")
        h = fit(model, X, y, steps=6, batch_size=8, l2=1e-3, compiled=compiled, progress=False, seed=0,
                optimizer=Plain(model.parameters()))
        runs.append((h.loss, [p.data for p in model.parameters()]))
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=1e-10)
    np.testing.assert_allclose(runs[1][1], runs[0][1], rtol=1e-10)


def test_compiled_fit_stops_on_a_diverged_loss_like_eager():
    """compiled=True raises DivergedError at the same step as eager, before that step's update,
    and leaves the model's Values where eager leaves them."""
    from chainrule.train import DivergedError
    X, y = make_moons(12, noise=0.1, seed=0)
    runs = []
    for compiled in (False, True):
        random.seed(0)
        model = MLP(2, [8, 1], activation="relu", output_activation="linear")
        with pytest.raises(DivergedError) as raised:
            fit(model, X, y, optimizer=SGD(model.parameters(), lr=1e30), steps=20, progress=False,
                compiled=compiled, replay_checks=0)
        runs.append((str(raised.value), [p.data for p in model.parameters()]))
    assert runs[1][0] == runs[0][0]
    np.testing.assert_allclose(runs[1][1], runs[0][1], rtol=1e-10)
    assert all(np.isfinite(runs[1][1]))


def test_value_and_grad_refuses_a_parameter_listed_twice():
    """Which copy would get the gradient is ambiguous: a named error, as the optimizers give."""
    from chainrule import Value

    w, v = Value(0.5), Value(-1.0)
    batched = vmap(lambda x: (w * x[0] + v) ** 2, reduce="mean")
    with pytest.raises(ValueError, match="more than once"):
        batched.value_and_grad([w, w, v])
    with pytest.raises(TypeError, match=r"params\[1\] must be a Value"):
        batched.value_and_grad([w, 2.0])
    loss, grad = batched.value_and_grad([w, v])(np.array([0.5, -1.0]), np.ones((3, 1)))
    assert loss == pytest.approx(0.25) and grad.tolist() == pytest.approx([-1.0, -1.0])


def test_matrix_products_write_weight_gradients_directly_only_where_nothing_wrote_before():
    """A layer's weight gradient is written by its matrix product when nothing writes those rows
    before it in backward; a layer used twice (the later use writes, the earlier one adds), or a
    weight that is also an output (its seed comes first), keeps adding, and an L2 penalty on the
    weights, which backward reaches after the layers, adds into what they wrote. Gradients equal eager."""
    from chainrule.nn import Layer
    from test_replay_record import check_compiled, check_vmap   # replay vs eager: loss and every gradient

    random.seed(4)
    layer, head = Layer(3, 4, activation="relu"), Layer(4, 1, activation="linear")
    X = np.random.default_rng(4).normal(size=(6, 3))

    def once(x):
        return head(layer(x)) ** 2

    def twice(x):
        return head(layer(layer([xi * 0.5 + 0.1 for xi in x])[:3])) ** 2

    def also_output(x):
        return head(layer(x)) ** 2, layer.neurons[0].w[0]

    for fn, direct in ((once, True), (twice, False), (also_output, False)):
        batched = check_vmap(fn, layer.parameters() + head.parameters(), [X, X[:4]], "mean")
        grids = [k for k in batched._program.kernels if isinstance(k, SumDot) and k.grid is not None]
        assert all(k.writes_first[0] for k in grids) is direct and any(k.writes_first[0] for k in grids)

    params = layer.parameters() + head.parameters()

    def penalised(x):
        return head(layer(x)) ** 2 + 0.01 * sum((p * p for p in params), Value(0.0))

    def penalised_batch(X):                        # compile: the whole batch in one recording
        return sum((head(layer(x)) ** 2 for x in X), Value(0.0)) + 0.01 * sum((p * p for p in params), Value(0.0))

    for make in (lambda: check_vmap(penalised, params, [X, X[:4]], "mean"),
                 lambda: check_compiled(penalised_batch, params, [(X.tolist(),), ((X * 0.5 - 0.25).tolist(),)])):
        replay = make()
        grids = [k for k in replay._program.kernels if isinstance(k, SumDot) and k.grid is not None]
        layers = [k for k in grids if k.grid[1].example]          # weights times a layer's inputs
        penalty = [k for k in grids if not k.grid[1].example]     # the weights times themselves
        assert len(layers) == 2 and all(k.writes_first[0] for k in layers), [k.writes_first for k in grids]
        assert len(penalty) == 1 and penalty[0].writes_first == (False, False)


def test_a_function_with_no_outputs_gives_an_empty_array_per_example():
    """Forward only, fn returning [] (or lists of nothing): an array with one empty row per example,
    shaped like the outputs, as compile gives [] for one call."""
    from chainrule import compile

    X = np.ones((3, 2))
    assert vmap(lambda x: [], reduce=None)(X).shape == (3, 0)
    assert vmap(lambda x: [[], []], reduce=None)(X).shape == (3, 2, 0)
    assert compile(lambda x: []).batch(X).shape == (3, 0)
    assert compile(lambda x: [])(X[0]) == []
