"""Neural networks built from Values: ``Neuron``, ``Layer`` and ``MLP``, as in the lecture.

>>> import random
>>> from chainrule import MLP
>>> random.seed(0)
>>> model = MLP(3, [4, 4, 1])
>>> model
MLP(3 -> 4 tanh -> 4 tanh -> 1 tanh, 41 parameters)
>>> out = model([2.0, 3.0, -1.0])
>>> type(out).__name__, len(model.parameters())
('Value', 41)
"""

from __future__ import annotations

import numbers
import random
from typing import Sequence

from .engine import Value

__all__ = ["ACTIVATIONS", "INITS", "Layer", "MLP", "Module", "Neuron"]

# Each activation maps a neuron's weighted sum to its output.
ACTIVATIONS = {
    "tanh": Value.tanh,
    "relu": Value.relu,
    "sigmoid": Value.sigmoid,
    "linear": lambda act: act,
}


def _check_activation(name: str) -> str:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of: {', '.join(ACTIVATIONS)}")
    return name


def _check_width(name: str, n) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"{name} must be a positive whole number, got {n!r}")
    return int(n)


def _as_inputs(x, nin: int) -> list:
    """Accept a list/tuple/array of numbers or Values (or one of them when nin == 1)."""
    if isinstance(x, (Value, numbers.Real)) and not isinstance(x, bool):
        x = [x]
    elif hasattr(x, "tolist") and not isinstance(x, (list, tuple)):   # a numpy array
        x = x.tolist()
    if not isinstance(x, (list, tuple)):
        raise TypeError(f"a layer takes a list of numbers or Values, got {type(x).__name__}")
    if len(x) != nin:
        raise ValueError(f"expected {nin} inputs, got {len(x)}")
    for xi in x:
        if not isinstance(xi, (Value, numbers.Real)) or isinstance(xi, bool):
            raise TypeError(f"inputs must be numbers or Values, got {type(xi).__name__} {xi!r}")
    return list(x)


class Module:
    """Anything with parameters: ``parameters()`` lists them, ``zero_grad()`` resets their gradients,
    ``named_parameters()`` names each by its place."""

    def parameters(self) -> list[Value]:
        return []

    def named_parameters(self) -> list[tuple[str, Value]]:
        """``(name, parameter)`` pairs in ``parameters()`` order, each named by its place.

        In an MLP, ``L{i}.N{j}.w{k}`` is ``model.layers[i].neurons[j].w[k]`` and ``L{i}.N{j}.b``
        that neuron's bias (indices count from 0, as Python's do); a Layer's names start at
        ``N{j}``, a Neuron's are ``w{k}`` and ``b``. Every parameter's ``label`` is its name, so
        drawings and the step-through view show where each box sits in the network. The names
        are a stable interface: other tools may rely on them.

        >>> import random; random.seed(0)
        >>> [name for name, _ in MLP(2, [2, 1]).named_parameters()][:4]
        ['L0.N0.w0', 'L0.N0.w1', 'L0.N0.b', 'L0.N1.w0']
        """
        return []

    def _name_parameters(self) -> None:
        for name, p in self.named_parameters():
            p.label = name

    def zero_grad(self) -> None:
        """Set every parameter's ``.grad`` to 0 (do this before each ``backward()`` in a training loop)."""
        for p in self.parameters():
            p.grad = 0.0


_WEIGHT_NAMES: list[str] = []


def _weight_names(n: int) -> list[str]:
    """``["w0", "w1", ...]``, ``n`` of them, made once for every neuron to share."""
    while len(_WEIGHT_NAMES) < n:
        _WEIGHT_NAMES.append(f"w{len(_WEIGHT_NAMES)}")
    return _WEIGHT_NAMES[:n]


INITS = ("uniform", "fan_in")


def _check_init(init: str) -> str:
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of: {', '.join(INITS)}")
    return init


class Neuron(Module):
    """``activation(w . x + b)`` with weights and bias drawn uniformly from [-1, 1].

    ``init="fan_in"`` scales that draw by ``nin ** -0.5`` (as EurekaLabs' micrograd does), which
    keeps a wide layer's sums near 1 and trains wide or deep networks far better; the default
    ``"uniform"`` is the lecture's, so the lecture's numbers repeat exactly.

    >>> import random; random.seed(1)
    >>> n = Neuron(2)
    >>> n
    Neuron(2, tanh)
    >>> round(n([1.0, -1.0]).data, 4) == round(((n.w[0] - n.w[1]) + n.b).tanh().data, 4)
    True
    """

    def __init__(self, nin: int, activation: str = "tanh", init: str = "uniform"):
        nin = _check_width("nin", nin)
        self.activation = _check_activation(activation)
        scale = nin ** -0.5 if _check_init(init) == "fan_in" else 1.0
        self.w = [Value(random.uniform(-1, 1) * scale) for _ in range(nin)]
        self.b = Value(random.uniform(-1, 1) * scale)
        self._name_parameters()

    def __call__(self, x) -> Value:
        return self._forward(_as_inputs(x, len(self.w)))

    def _forward(self, x: list) -> Value:
        act = sum((wi * xi for wi, xi in zip(self.w, x)), self.b)
        return ACTIVATIONS[self.activation](act)

    def parameters(self) -> list[Value]:
        return self.w + [self.b]

    def named_parameters(self) -> list[tuple[str, Value]]:
        return [(f"w{i}", w) for i, w in enumerate(self.w)] + [("b", self.b)]

    def _name_parameters(self, prefix: str = "") -> None:
        # What named_parameters() says, written without building it (a wide layer has many).
        for w, name in zip(self.w, _weight_names(len(self.w))):
            w.label = prefix + name
        self.b.label = prefix + "b"

    def __repr__(self) -> str:
        return f"Neuron({len(self.w)}, {self.activation})"


class Layer(Module):
    """``nout`` neurons reading the same inputs. One output comes back as a single Value.

    >>> import random; random.seed(2)
    >>> layer = Layer(3, 2, activation="relu")
    >>> layer, len(layer([1, 2, 3]))
    (Layer(3 -> 2, relu), 2)
    """

    def __init__(self, nin: int, nout: int, activation: str = "tanh", init: str = "uniform"):
        nin, nout = _check_width("nin", nin), _check_width("nout", nout)
        self.neurons = [Neuron(nin, activation, init) for _ in range(nout)]
        self._name_parameters()

    @property
    def nin(self) -> int:
        return len(self.neurons[0].w)

    @property
    def activation(self) -> str:
        return self.neurons[0].activation

    def __call__(self, x):
        x = _as_inputs(x, self.nin)
        outs = [n._forward(x) for n in self.neurons]
        return outs[0] if len(outs) == 1 else outs

    def parameters(self) -> list[Value]:
        return [p for n in self.neurons for p in n.parameters()]

    def named_parameters(self) -> list[tuple[str, Value]]:
        return [(f"N{j}.{name}", p) for j, n in enumerate(self.neurons) for name, p in n.named_parameters()]

    def _name_parameters(self, prefix: str = "") -> None:
        for j, n in enumerate(self.neurons):
            n._name_parameters(f"{prefix}N{j}.")

    def __repr__(self) -> str:
        return f"Layer({self.nin} -> {len(self.neurons)}, {self.activation})"


class MLP(Module):
    """A multi-layer perceptron: ``MLP(3, [4, 4, 1])`` is the lecture's network.

    ``activation`` is used by the hidden layers and, unless ``output_activation`` says otherwise,
    by the last layer too; ``init`` is the weights' initialisation (see :class:`Neuron`).
    Parameters are labelled by place (``L0.N3.w2``, see ``named_parameters``). micrograd's demo network is
    ``MLP(2, [16, 16, 1], activation="relu", output_activation="linear")``.

    >>> import random; random.seed(3)
    >>> MLP(2, [16, 16, 1], activation="relu", output_activation="linear")
    MLP(2 -> 16 relu -> 16 relu -> 1 linear, 337 parameters)
    """

    def __init__(self, nin: int, nouts: Sequence[int], activation: str = "tanh",
                 output_activation: str | None = None, init: str = "uniform"):
        nin = _check_width("nin", nin)
        if isinstance(nouts, numbers.Integral):
            nouts = [nouts]
        nouts = [_check_width("layer width", n) for n in nouts]
        if not nouts:
            raise ValueError("an MLP needs at least one layer width in nouts")
        _check_activation(activation)
        last = _check_activation(activation if output_activation is None else output_activation)
        sizes = [nin] + nouts
        self.layers = [Layer(sizes[i], sizes[i + 1], activation if i < len(nouts) - 1 else last, init)
                       for i in range(len(nouts))]
        self._name_parameters()

    @property
    def nin(self) -> int:
        return self.layers[0].nin

    @property
    def nouts(self) -> list[int]:
        return [len(layer.neurons) for layer in self.layers]

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def parameters(self) -> list[Value]:
        return [p for layer in self.layers for p in layer.parameters()]

    def named_parameters(self) -> list[tuple[str, Value]]:
        return [(f"L{i}.{name}", p) for i, layer in enumerate(self.layers) for name, p in layer.named_parameters()]

    def _name_parameters(self) -> None:
        for i, layer in enumerate(self.layers):
            layer._name_parameters(f"L{i}.")

    def __repr__(self) -> str:
        sizes = " -> ".join(f"{len(layer.neurons)} {layer.activation}" for layer in self.layers)
        return f"MLP({self.nin} -> {sizes}, {len(self.parameters())} parameters)"
