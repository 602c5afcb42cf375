"""to_torch / from_torch: the same network in both libraries, outputs and gradients equal number for number,
model files through both, and a named error for anything an MLP cannot be (training: test_torch_parity.py)."""

import collections
import json
import random
import re
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
nn = torch.nn

from chainrule import MLP, UnsupportedModuleError, from_torch, load_model, save_model, to_torch  # noqa: E402

ACTIVATIONS = ["tanh", "relu", "sigmoid", "linear"]
TORCH_MODULE = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "linear": nn.Identity}
SHAPES = [(1, [1]), (3, [4, 1]), (2, [5, 4, 3]), (4, [6, 5, 4, 3])]
TOL = 1e-12


def _inputs(nin, n=20, seed=0):
    rng = random.Random(seed)
    return [[rng.uniform(-2, 2) for _ in range(nin)] for _ in range(n)]


def _chainrule_side(model, xs, coefficients):
    """Outputs on each input, and every parameter's gradient of sum_i c_i . output_i."""
    outs = [model(x) for x in xs]
    outs = [o if isinstance(o, list) else [o] for o in outs]
    total = sum(c * o for row_c, row_o in zip(coefficients, outs) for c, o in zip(row_c, row_o))
    model.zero_grad()
    total.backward()
    return [[o.data for o in row] for row in outs], [p.grad for p in model.parameters()]


def _torch_side(net, xs, coefficients):
    """The same for a Sequential; gradients listed in chainrule's order (per neuron: weights, then bias)."""
    out = net(torch.tensor(xs, dtype=torch.float64))
    net.zero_grad()
    (out * torch.tensor(coefficients, dtype=torch.float64)).sum().backward()
    grads = []
    for linear in (m for m in net if isinstance(m, nn.Linear)):
        for j in range(linear.out_features):
            grads += linear.weight.grad[j].tolist() + [linear.bias.grad[j].item()]
    return out.tolist(), grads


def _assert_same_function(model, net, seed=0):
    xs = _inputs(model.nin, seed=seed)
    rng = random.Random(seed + 1)
    coefficients = [[rng.uniform(-1, 1) for _ in range(model.nouts[-1])] for _ in xs]
    (outs, grads), (touts, tgrads) = _chainrule_side(model, xs, coefficients), _torch_side(net, xs, coefficients)
    out_diff = max(abs(a - b) for row, trow in zip(outs, touts) for a, b in zip(row, trow))
    assert len(grads) == len(tgrads) == len(model.parameters())
    grad_diff = max(abs(a - b) for a, b in zip(grads, tgrads))
    assert out_diff < TOL and grad_diff < TOL, (out_diff, grad_diff)
    assert any(g != 0 for g in grads)          # a gradient check that compares zeros would prove nothing


def _activation_pairs():
    return [(a, a) for a in ACTIVATIONS] + [("relu", "linear"), ("tanh", "sigmoid"), ("linear", "relu")]


@pytest.mark.parametrize("activation,output_activation", _activation_pairs())
@pytest.mark.parametrize("nin,nouts", SHAPES)
def test_to_torch_gives_the_same_outputs_and_gradients(nin, nouts, activation, output_activation):
    """An MLP and its to_torch Sequential agree to 1e-12 in outputs and in every parameter's gradient."""
    model = MLP(nin, nouts, activation=activation, output_activation=output_activation)
    net = to_torch(model)
    kinds = [type(m) for m in net]
    assert kinds[0::2] == [nn.Linear] * len(nouts)
    assert kinds[1::2] == [TORCH_MODULE[activation]] * (len(nouts) - 1) + [TORCH_MODULE[output_activation]]
    assert all(p.dtype == torch.float64 for p in net.parameters())
    _assert_same_function(model, net)


def _sequential(nin, nouts, activation, output_activation, omit_linear=False):
    """A freshly initialised torch Sequential; with omit_linear, a "linear" layer has no activation module."""
    modules, sizes = [], [nin] + nouts
    for i, nout in enumerate(nouts):
        act = output_activation if i == len(nouts) - 1 else activation
        modules.append(nn.Linear(sizes[i], nout, dtype=torch.float64))
        if not (omit_linear and act == "linear"):
            modules.append(TORCH_MODULE[act]())
    return nn.Sequential(*modules)


@pytest.mark.parametrize("activation,output_activation", _activation_pairs())
@pytest.mark.parametrize("nin,nouts", SHAPES)
def test_from_torch_gives_the_same_outputs_and_gradients(nin, nouts, activation, output_activation):
    """A torch Sequential and its from_torch MLP agree to 1e-12; the MLP has the same architecture."""
    torch.manual_seed(nin * 10 + len(nouts))
    net = _sequential(nin, nouts, activation, output_activation)
    model = from_torch(net)
    assert (model.nin, model.nouts) == (nin, nouts)
    assert [layer.activation for layer in model.layers] == [activation] * (len(nouts) - 1) + [output_activation]
    _assert_same_function(model, net, seed=3)


@settings(max_examples=30, deadline=None)
@given(nin=st.integers(1, 4), nouts=st.lists(st.integers(1, 5), min_size=1, max_size=4),
       activation=st.sampled_from(ACTIVATIONS), output_activation=st.sampled_from(ACTIVATIONS),
       seed=st.integers(0, 2**16))
def test_any_shape_round_trips_both_ways_with_equal_outputs_and_gradients(nin, nouts, activation,
                                                                         output_activation, seed):
    """For random shapes and activations: MLP -> torch -> MLP and torch -> MLP -> torch keep every number and
    agree in outputs and gradients (1e-12)."""
    random.seed(seed)
    model = MLP(nin, nouts, activation=activation, output_activation=output_activation)
    net = to_torch(model)
    xs = _inputs(nin, n=4, seed=seed)
    coefficients = [[1.0] * nouts[-1] for _ in xs]
    (outs, grads), (touts, tgrads) = _chainrule_side(model, xs, coefficients), _torch_side(net, xs, coefficients)
    assert max(abs(a - b) for row, trow in zip(outs, touts) for a, b in zip(row, trow)) < TOL
    assert max(abs(a - b) for a, b in zip(grads, tgrads)) < TOL
    assert [p.data for p in from_torch(net).parameters()] == [p.data for p in model.parameters()]
    torch.manual_seed(seed)
    fresh = _sequential(nin, nouts, activation, output_activation, omit_linear=seed % 2 == 0)
    again = to_torch(from_torch(fresh))
    # Compared layer by layer: an omitted activation module shifts the state-dict names, not the tensors.
    linears = [[m for m in seq if isinstance(m, nn.Linear)] for seq in (fresh, again)]
    assert len(linears[0]) == len(linears[1]) == len(nouts)
    for theirs, ours in zip(*linears):
        assert torch.equal(theirs.weight, ours.weight) and torch.equal(theirs.bias, ours.bias)


def test_a_linear_with_no_activation_module_is_a_linear_layer():
    """Linear followed directly by Linear (or ending the Sequential) reads as activation "linear"."""
    torch.manual_seed(0)
    net = _sequential(3, [4, 4, 2], "linear", "linear", omit_linear=True)
    assert all(isinstance(m, nn.Linear) for m in net)
    model = from_torch(net)
    assert repr(model) == "MLP(3 -> 4 linear -> 4 linear -> 2 linear, 46 parameters)"
    _assert_same_function(model, net)
    torch.manual_seed(1)
    net = _sequential(2, [5, 1], "tanh", "linear", omit_linear=True)       # the usual PyTorch way to write it
    assert [type(m) for m in net] == [nn.Linear, nn.Tanh, nn.Linear]
    assert repr(from_torch(net)) == "MLP(2 -> 5 tanh -> 1 linear, 21 parameters)"


@pytest.mark.parametrize("nin,nouts", SHAPES)
def test_round_trips_copy_every_weight_exactly(nin, nouts):
    """from_torch(to_torch(m)) has m's exact parameters; to_torch(from_torch(net)) has net's exact tensors."""
    model = MLP(nin, nouts, activation="relu", output_activation="sigmoid")
    back = from_torch(to_torch(model))
    assert repr(back) == repr(model)
    assert [p.data for p in back.parameters()] == [p.data for p in model.parameters()]
    torch.manual_seed(len(nouts))
    net = _sequential(nin, nouts, "tanh", "linear")
    again = to_torch(from_torch(net)).state_dict()
    assert list(again) == list(net.state_dict())
    for name, tensor in net.state_dict().items():
        assert torch.equal(again[name], tensor), name


def test_the_copies_are_independent():
    """Changing the torch copy's weights leaves the chainrule model alone, and the other way round."""
    model = MLP(2, [3, 1])
    before = [p.data for p in model.parameters()]
    net = to_torch(model)
    with torch.no_grad():
        net[0].weight.add_(1.0)
    assert [p.data for p in model.parameters()] == before
    back = from_torch(net)
    weight = net[0].weight.detach().clone()
    back.parameters()[0].data += 5.0
    assert torch.equal(net[0].weight.detach(), weight)


def test_float32_weights_are_read_exactly():
    """A float32 module's weights become the same numbers in float64 (every float32 is a float64)."""
    torch.manual_seed(4)
    net = _sequential(3, [4, 2], "relu", "linear").float()
    model = from_torch(net)
    expected = []
    for linear in (net[0], net[2]):
        for j in range(linear.out_features):
            expected += linear.weight[j].tolist() + [linear.bias[j].item()]
    assert [p.data for p in model.parameters()] == expected


def test_converting_leaves_both_random_states_alone():
    """Converting in the middle of a seeded run (either direction) changes nothing downstream."""
    net = nn.Sequential(nn.Linear(2, 3), nn.Tanh())
    model = MLP(2, [3, 1])
    random.seed(7)
    torch.manual_seed(7)
    state, torch_state = random.getstate(), torch.random.get_rng_state()
    from_torch(net)
    to_torch(model)
    assert random.getstate() == state
    assert torch.equal(torch.random.get_rng_state(), torch_state)


def _one_line(message: str) -> str:
    assert "\n" not in message
    return message


# (a Sequential, or how to build one) -> (position the message names, words it must contain)
UNSUPPORTED = {
    "conv2d": (lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()), "module 0 ", ["Conv2d", "not supported"]),
    "dropout": (lambda: nn.Sequential(nn.Linear(2, 4), nn.Dropout(0.5), nn.Linear(4, 1)), "module 1 ",
                ["Dropout", "not supported", "remove it"]),
    "leaky_relu": (lambda: nn.Sequential(nn.Linear(2, 4), nn.LeakyReLU()), "module 1 ", ["LeakyReLU"]),
    "no_bias": (lambda: nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1, bias=False)), "module 2 ",
                ["bias=False", "no bias", "bias=True"]),
    "nested": (lambda: nn.Sequential(nn.Linear(2, 4), nn.Sequential(nn.Tanh(), nn.Linear(4, 1))), "module 1 ",
               ["Sequential", "flatten"]),
    "activation_first": (lambda: nn.Sequential(nn.ReLU(), nn.Linear(2, 1)), "module 0 ", ["before any Linear"]),
    "two_activations": (lambda: nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Tanh()), "module 2 ",
                        ["Tanh", "follows another activation"]),
    "widths": (lambda: nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(4, 1)), "module 2 ",
               ["takes 4 inputs", "gives 3"]),
    "mixed_hidden": (lambda: nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 3), nn.Tanh(),
                                           nn.Linear(3, 1)), "module 3 ", ["'tanh'", "'relu'", "share one"]),
    "subclass": (lambda: nn.Sequential(type("MyLinear", (nn.Linear,), {})(2, 1)), "module 0 ", ["MyLinear", "subclass of Linear"]),
    "named": (lambda: nn.Sequential(collections.OrderedDict([("fc", nn.Linear(2, 3)), ("drop", nn.Dropout())])),
              "module 1 ('drop')", ["Dropout"]),
    "nan_weight": (lambda: _with_nan(), "module 0 ", ["weight[1, 0] = nan", "not a finite"]),
    "integer_weights": (lambda: _with_integer_weights(), "module 0 ", ["torch.int64"]),
}


def _with_nan():
    net = nn.Sequential(nn.Linear(2, 2))
    with torch.no_grad():
        net[0].weight[1, 0] = float("nan")
    return net


def _with_integer_weights():
    net = nn.Sequential(nn.Linear(2, 2))
    net[0].weight = nn.Parameter(torch.ones(2, 2, dtype=torch.int64), requires_grad=False)
    return net


@pytest.mark.parametrize("case", list(UNSUPPORTED))
def test_unsupported_modules_raise_a_named_error_with_their_position(case):
    """Whatever an MLP cannot be raises UnsupportedModuleError, one line naming the module's position and kind."""
    build, position, words = UNSUPPORTED[case]
    with pytest.raises(UnsupportedModuleError) as info:
        from_torch(build())
    message = _one_line(str(info.value))
    assert message.startswith(position), message
    for word in words:
        assert word in message, (word, message)


def test_from_torch_needs_a_sequential():
    """A bare Linear, an empty Sequential, or something that is not a torch module are named errors."""
    with pytest.raises(UnsupportedModuleError, match=r"got Linear; wrap a single layer"):
        from_torch(nn.Linear(2, 1))
    with pytest.raises(UnsupportedModuleError, match="no Linear layer"):
        from_torch(nn.Sequential())
    with pytest.raises(UnsupportedModuleError, match="got MLP"):
        from_torch(MLP(2, [1]))
    assert issubclass(UnsupportedModuleError, ValueError)


def test_to_torch_errors_name_the_problem():
    """to_torch takes an MLP, and refuses a model whose weights are not finite (as save_model does)."""
    with pytest.raises(TypeError, match="to_torch takes a chainrule MLP, got Sequential"):
        to_torch(nn.Sequential(nn.Linear(1, 1)))
    model = MLP(2, [2, 1])
    model.parameters()[3].data = float("inf")
    with pytest.raises(ValueError, match=r"^to_torch: .*parameter 3 is inf"):
        to_torch(model)


def test_without_torch_the_error_says_how_to_install_it(monkeypatch):
    """With PyTorch missing, both directions raise ImportError with the install hint, not a bare traceback."""
    monkeypatch.setitem(sys.modules, "torch", None)        # makes `import torch` raise ImportError
    for call in (lambda: to_torch(MLP(2, [1])), lambda: from_torch(object())):
        with pytest.raises(ImportError, match=re.escape('pip install "chainrule[torch]"')):
            call()


# --- model files ------------------------------------------------------------------------------------

def test_a_saved_model_file_round_trips_through_pytorch(tmp_path):
    """save_model -> load_model -> to_torch -> from_torch -> save_model writes the same weights and architecture."""
    model = MLP(3, [5, 4, 2], activation="relu", output_activation="linear")
    first = save_model(model, tmp_path / "model.json")
    net = to_torch(load_model(first))
    _assert_same_function(model, net)
    second = save_model(from_torch(net), tmp_path / "again.json")
    assert json.loads(first.read_text()) == json.loads(second.read_text())


def test_a_pytorch_model_round_trips_through_a_model_file(tmp_path):
    """from_torch -> save_model -> load_model -> to_torch gives back the Sequential's exact tensors."""
    torch.manual_seed(5)
    net = _sequential(2, [6, 6, 1], "tanh", "sigmoid")
    path = save_model(from_torch(net), tmp_path / "model.json")
    again = to_torch(load_model(path)).state_dict()
    for name, tensor in net.state_dict().items():
        assert torch.equal(again[name], tensor), name
