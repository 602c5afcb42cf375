"""Neurons, layers and MLPs: the lecture's numbers, its training loop, and parity with PyTorch."""

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from chainrule import MLP, Layer, Module, Neuron, Value
from lecture import neuron

# The README's first example. Its expected output is the lecture's (o = 0.7071, x1.grad = -1.5, ...),
# so this test pins the README to the lecture, not to whatever chainrule happens to print.
README_EXAMPLE = '''\
from chainrule import Value

x1 = Value(2.0, label="x1"); x2 = Value(0.0, label="x2")
w1 = Value(-3.0, label="w1"); w2 = Value(1.0, label="w2")
b = Value(6.8813735870195432, label="b")
n = x1*w1 + x2*w2 + b; n.label = "n"
o = n.tanh(); o.label = "o"
o.backward()

print(f"o = {o.data:.4f}, n.grad = {n.grad:.4f}")
for v in (x1, w1, x2, w2):
    print(f"{v.label}.grad = {v.grad:.4f}")
'''

README_OUTPUT = '''\
o = 0.7071, n.grad = 0.5000
x1.grad = -1.5000
w1.grad = 1.0000
x2.grad = 0.5000
w2.grad = 0.0000
'''

README = Path(__file__).resolve().parents[1] / "README.md"

LECTURE_XS = [[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0], [1.0, 1.0, -1.0]]
LECTURE_YS = [1.0, -1.0, -1.0, 1.0]


def test_lecture_neuron_numbers():
    """The lecture's neuron: o = 0.7071, n.grad = 0.5, x1.grad = -1.5, w1.grad = 1.0, x2.grad = 0.5, w2.grad = 0."""
    o, nodes = neuron()
    o.backward()
    x1, x2, w1, w2, n = (nodes[k] for k in ["x1", "x2", "w1", "w2", "n"])
    assert round(o.data, 4) == 0.7071
    assert n.grad == pytest.approx(0.5, abs=1e-12)
    assert x1.grad == pytest.approx(-1.5, abs=1e-12)
    assert w1.grad == pytest.approx(1.0, abs=1e-12)
    assert x2.grad == pytest.approx(0.5, abs=1e-12)
    assert w2.grad == 0.0


def test_readme_example_prints_the_lecture_numbers():
    """The README's example, run as a script in a fresh interpreter, prints the lecture's numbers."""
    run = subprocess.run([sys.executable, "-c", README_EXAMPLE], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout == README_OUTPUT


def test_readme_contains_the_tested_example():
    """README.md shows exactly the example and output that the test above runs."""
    text = README.read_text(encoding="utf-8")
    assert README_EXAMPLE in text
    assert README_OUTPUT in text


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 1234])
def test_lecture_training_loop_learns_the_four_examples(seed):
    """The lecture's loop (MLP(3, [4, 4, 1]), squared error, p.grad = 0.0, p.data += -0.05 * p.grad) fits all 4."""
    random.seed(seed)
    n = MLP(3, [4, 4, 1])
    losses = []
    for _ in range(100):
        ypred = [n(x) for x in LECTURE_XS]
        loss = sum((yout - ygt) ** 2 for ygt, yout in zip(LECTURE_YS, ypred))
        for p in n.parameters():
            p.grad = 0.0
        loss.backward()
        for p in n.parameters():
            p.data += -0.05 * p.grad
        losses.append(loss.data)
    assert losses[-1] < 0.05 and losses[-1] < losses[0] / 10
    assert [yp.data > 0 for yp in ypred] == [y > 0 for y in LECTURE_YS]


# --- parity with PyTorch ----------------------------------------------------------------------------

TORCH_ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid, "linear": lambda t: t}


def torch_copy(model: MLP):
    """The model's weights as float64 tensors (one (W, b) pair per layer) and the forward function."""
    params = []
    for layer in model.layers:
        W = torch.tensor([[w.data for w in n.w] for n in layer.neurons], dtype=torch.float64, requires_grad=True)
        b = torch.tensor([n.b.data for n in layer.neurons], dtype=torch.float64, requires_grad=True)
        params.append((W, b, TORCH_ACTIVATIONS[layer.activation]))

    def forward(x):
        h = torch.tensor(x, dtype=torch.float64)
        for W, b, act in params:
            h = act(W @ h + b)
        return h
    return params, forward


@pytest.mark.parametrize(("activation", "output_activation"), [
    ("tanh", None), ("relu", "linear"), ("sigmoid", "tanh"), ("linear", "sigmoid"),
])
def test_mlp_forward_and_backward_match_torch(activation, output_activation):
    """An MLP's outputs and every parameter gradient equal a float64 PyTorch network with the same weights."""
    model = MLP(3, [5, 4, 2], activation=activation, output_activation=output_activation)
    params, forward = torch_copy(model)
    loss = sum((o - 0.3) ** 2 for x in LECTURE_XS for o in model(x))
    t_loss = sum(((forward(x) - 0.3) ** 2).sum() for x in LECTURE_XS)
    loss.backward()
    t_loss.backward()
    assert loss.data == pytest.approx(t_loss.item(), rel=1e-12)
    for layer, (W, b, _) in zip(model.layers, params):
        ours_W = [[w.grad for w in n.w] for n in layer.neurons]
        ours_b = [n.b.grad for n in layer.neurons]
        np.testing.assert_allclose(ours_W, W.grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(ours_b, b.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_inputs_that_are_values_get_gradients():
    """Values fed into a network receive their gradient, as in PyTorch."""
    model = MLP(2, [3, 1])
    params, forward = torch_copy(model)
    xs = [Value(0.4), Value(-1.1)]
    model(xs).backward()
    tx = torch.tensor([0.4, -1.1], dtype=torch.float64, requires_grad=True)
    h = tx
    for W, b, act in params:
        h = act(W @ h + b)
    h.sum().backward()
    np.testing.assert_allclose([x.grad for x in xs], tx.grad.numpy(), rtol=1e-12)


# --- construction, shapes and errors ------------------------------------------------------------------

def test_parameter_count_and_order():
    """MLP(3, [4, 4, 1]) has 41 parameters, ordered per neuron w + [b], neurons then layers."""
    model = MLP(3, [4, 4, 1])
    expected = [p for layer in model.layers for n in layer.neurons for p in n.w + [n.b]]
    assert len(model.parameters()) == (3 + 1) * 4 + (4 + 1) * 4 + (4 + 1) * 1 == 41
    assert all(a is b for a, b in zip(model.parameters(), expected))
    assert len(Layer(3, 2).parameters()) == 8 and len(Neuron(5).parameters()) == 6
    assert Module().parameters() == []


def test_weights_are_uniform_in_minus_one_one_and_seeded():
    """Weights and biases come from random.uniform(-1, 1): random.seed(k) reproduces a model exactly."""
    random.seed(7)
    a = [p.data for p in MLP(2, [16, 16, 1]).parameters()]
    random.seed(7)
    b = [p.data for p in MLP(2, [16, 16, 1]).parameters()]
    random.seed(8)
    c = [p.data for p in MLP(2, [16, 16, 1]).parameters()]
    assert a == b and a != c
    assert all(-1 <= x <= 1 for x in a)
    random.seed(7)
    assert a[:3] == [random.uniform(-1, 1) for _ in range(3)]


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid", "linear"])
def test_neuron_activation(activation):
    """A neuron applies its activation to w . x + b."""
    n = Neuron(2, activation=activation)
    act = n.w[0].data * 0.5 + n.w[1].data * -2.0 + n.b.data
    expected = {"tanh": np.tanh(act), "relu": max(act, 0.0), "sigmoid": 1 / (1 + np.exp(-act)),
                "linear": act}[activation]
    assert n([0.5, -2.0]).data == pytest.approx(expected, rel=1e-14, abs=1e-15)
    assert n.activation == activation


def test_output_activation_defaults_to_activation():
    """output_activation=None means the last layer uses ``activation``; otherwise it is its own."""
    assert [layer.activation for layer in MLP(2, [3, 3, 1], activation="relu").layers] == ["relu"] * 3
    demo = MLP(2, [16, 16, 1], activation="relu", output_activation="linear")
    assert [layer.activation for layer in demo.layers] == ["relu", "relu", "linear"]


@pytest.mark.parametrize("make", [lambda: Neuron(2, "swish"), lambda: Layer(2, 2, activation="gelu"),
                                  lambda: MLP(2, [2], activation="elu"), lambda: MLP(2, [2], output_activation="x")])
def test_unknown_activation_lists_the_valid_ones(make):
    """An unknown activation name is a ValueError that lists tanh, relu, sigmoid and linear."""
    with pytest.raises(ValueError, match="unknown activation") as info:
        make()
    for name in ("tanh", "relu", "sigmoid", "linear"):
        assert name in str(info.value)


@pytest.mark.parametrize("model", [lambda: MLP(3, [4, 1]), lambda: Layer(3, 2), lambda: Neuron(3)])
def test_wrong_input_width_says_expected_and_got(model):
    """Feeding 2 numbers to a 3-input model is a ValueError saying expected 3, got 2."""
    with pytest.raises(ValueError, match="expected 3 inputs, got 2"):
        model()([1.0, 2.0])


def test_non_number_inputs_are_type_errors():
    """A string among the inputs, or a non-list input, is a TypeError naming it."""
    with pytest.raises(TypeError, match="str"):
        MLP(2, [1])([1.0, "2"])
    with pytest.raises(TypeError):
        MLP(2, [1])({"a": 1})


def test_one_wide_hidden_layer_works():
    """A 1-wide layer returns a single Value, and the next layer still takes it."""
    model = MLP(2, [1, 3, 1])
    out = model([0.5, -0.5])
    assert isinstance(out, Value)
    out.backward()
    assert any(p.grad != 0 for p in model.layers[0].parameters())
    assert isinstance(Layer(2, 1)([1, 2]), Value) and len(Layer(2, 3)([1, 2])) == 3


def test_numpy_and_value_inputs_are_accepted():
    """A numpy row and a list of Values give the same output as a list of floats."""
    model = MLP(2, [3, 1])
    a = model([0.25, -1.0]).data
    assert model(np.array([0.25, -1.0])).data == a
    assert model([Value(0.25), Value(-1.0)]).data == a


def test_zero_grad_resets_every_parameter():
    """zero_grad() sets every parameter's gradient back to 0.0."""
    model = MLP(3, [4, 1])
    model(LECTURE_XS[0]).backward()
    assert any(p.grad != 0 for p in model.parameters())
    model.zero_grad()
    assert all(p.grad == 0.0 for p in model.parameters())


def test_repr_shows_sizes_and_activations():
    """repr shows layer sizes, activations and the parameter count."""
    assert repr(MLP(3, [4, 4, 1])) == "MLP(3 -> 4 tanh -> 4 tanh -> 1 tanh, 41 parameters)"
    assert repr(MLP(2, [16, 16, 1], activation="relu", output_activation="linear")) == (
        "MLP(2 -> 16 relu -> 16 relu -> 1 linear, 337 parameters)")
    assert repr(Layer(3, 2, activation="sigmoid")) == "Layer(3 -> 2, sigmoid)"
    assert repr(Neuron(4)) == "Neuron(4, tanh)"


@pytest.mark.parametrize("make", [lambda: MLP(0, [2]), lambda: MLP(2, []), lambda: MLP(2, [2, 0]),
                                  lambda: Layer(2.5, 1), lambda: Neuron(-1)])
def test_bad_sizes_are_value_errors(make):
    """Zero, negative, fractional or missing layer sizes are ValueErrors."""
    with pytest.raises(ValueError):
        make()


def test_mlp_nin_and_nouts():
    """mlp.nin and mlp.nouts give back the sizes it was built with."""
    model = MLP(3, [4, 4, 1])
    assert (model.nin, model.nouts) == (3, [4, 4, 1])


def test_every_parameter_is_labelled_by_its_place_at_every_level():
    """Neuron, Layer and MLP each label their parameters as their named_parameters() names them."""
    from chainrule.nn import Layer, Neuron

    for module in (Neuron(3), Layer(2, 3), MLP(2, [3, 12, 1])):
        named = module.named_parameters()
        assert [p.label for _, p in named] == [name for name, _ in named]
    assert MLP(2, [3, 12, 1]).parameters()[-1].label == "L2.N0.b"
    assert MLP(12, [2]).parameters()[11].label == "L0.N0.w11"
