"""Graduating to PyTorch and back: ``to_torch(model)`` and ``from_torch(module)``, number for number.

An ``MLP`` and a ``torch.nn.Sequential`` describe the same network when every chainrule ``Layer``
becomes one ``Linear`` followed by its activation module::

    MLP(2, [16, 16, 1], activation="relu", output_activation="linear")
    Sequential(Linear(2, 16), ReLU(), Linear(16, 16), ReLU(), Linear(16, 1), Identity())

Neuron ``j`` of a layer is row ``j`` of that ``Linear``: its weights are ``weight[j, :]`` and its
bias is ``bias[j]``. The tensors are float64, the numbers chainrule's ``Value`` holds, so the copy is
exact and both libraries compute the same outputs and gradients up to the order of their sums.

Both directions go through the JSON description ``serialize.model_to_dict`` writes, so a model
file, an ``MLP`` and a ``Sequential`` are three views of one thing, checked by one set of rules.

PyTorch is optional (``pip install "chainrule[torch]"``) and imported only when a function here runs.

>>> import random; random.seed(0)
>>> from chainrule import MLP
>>> model = MLP(2, [3, 1], activation="relu", output_activation="linear")
>>> net = to_torch(model)
>>> net
Sequential(
  (0): Linear(in_features=2, out_features=3, bias=True)
  (1): ReLU()
  (2): Linear(in_features=3, out_features=1, bias=True)
  (3): Identity()
)
>>> import torch
>>> net(torch.tensor([0.5, -1.0], dtype=torch.float64)).item() == model([0.5, -1.0]).data
True
>>> from_torch(net)
MLP(2 -> 3 relu -> 1 linear, 13 parameters)
"""

from __future__ import annotations

import math

from .nn import MLP
from .serialize import FORMAT, VERSION, model_from_dict, model_to_dict

__all__ = ["INSTALL_HINT", "TORCH_ACTIVATIONS", "UnsupportedModuleError", "from_torch", "sequential_code",
           "to_torch"]

INSTALL_HINT = 'this needs PyTorch; install it with: pip install "chainrule[torch]"'

# chainrule's activation name -> the torch.nn module class that computes it. One table for both
# directions and for the loading code the command line prints.
TORCH_ACTIVATIONS = {"tanh": "Tanh", "relu": "ReLU", "sigmoid": "Sigmoid", "linear": "Identity"}


class UnsupportedModuleError(ValueError):
    """A PyTorch module that ``from_torch`` cannot turn into an ``MLP``; the message names the module
    and its position in the ``Sequential``, and says what would work."""


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return torch


def _model_dict(model: MLP, caller: str) -> dict:
    """``model_to_dict(model)``, its errors prefixed with the caller's name."""
    if not isinstance(model, MLP):
        raise TypeError(f"{caller} takes a chainrule MLP, got {type(model).__name__}")
    try:
        return model_to_dict(model)
    except ValueError as err:
        raise ValueError(f"{caller}: {err}") from None


def _layers(d: dict) -> list[tuple[int, int, str, list[float]]]:
    """``(nin, nout, activation, parameters)`` per layer of a model dict, parameters in its order."""
    sizes = [d["nin"]] + d["nouts"]
    params = d["parameters"]
    layers, start = [], 0
    for i, nout in enumerate(d["nouts"]):
        nin = sizes[i]
        count = (nin + 1) * nout
        activation = d["output_activation"] if i == len(d["nouts"]) - 1 else d["activation"]
        layers.append((nin, nout, activation, params[start:start + count]))
        start += count
    return layers


def to_torch(model: MLP):
    """The ``torch.nn.Sequential`` (float64) that computes what ``model`` computes, with a copy of its weights.

    Each layer becomes a ``Linear`` and its activation (``ReLU``, ``Tanh``, ``Sigmoid``, or
    ``Identity`` for ``"linear"``). The copy is independent: training one leaves the other alone.
    Neither Python's nor torch's random state is used, so a seeded run stays as it was.
    A model ``save_model`` could not save (a non-finite weight, neurons of one layer with different
    activations) raises the same error here.

    >>> import random; random.seed(1)
    >>> from chainrule import MLP
    >>> net = to_torch(MLP(3, [4, 2], activation="tanh", output_activation="sigmoid"))
    >>> [type(m).__name__ for m in net], next(net.parameters()).dtype
    (['Linear', 'Tanh', 'Linear', 'Sigmoid'], torch.float64)
    """
    torch = _torch()
    modules = []
    for nin, nout, activation, params in _layers(_model_dict(model, "to_torch")):
        # skip_init: no random initialisation to overwrite, so torch's random state is left alone.
        linear = torch.nn.utils.skip_init(torch.nn.Linear, nin, nout, dtype=torch.float64)
        # Row j holds neuron j's weights then its bias, as in model.parameters().
        rows = torch.tensor(params, dtype=torch.float64).reshape(nout, nin + 1)
        with torch.no_grad():
            linear.weight.copy_(rows[:, :nin])
            linear.bias.copy_(rows[:, nin])
        modules += [linear, getattr(torch.nn, TORCH_ACTIVATIONS[activation])()]
    return torch.nn.Sequential(*modules)


def sequential_code(model: MLP) -> str:
    """The Python expression that builds ``to_torch(model)``'s architecture (with fresh weights).

    >>> import random; random.seed(2)
    >>> from chainrule import MLP
    >>> sequential_code(MLP(2, [4, 1], activation="relu", output_activation="linear"))
    'torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1), torch.nn.Identity()).double()'
    """
    parts = []
    for nin, nout, activation, _ in _layers(_model_dict(model, "sequential_code")):
        parts += [f"torch.nn.Linear({nin}, {nout})", f"torch.nn.{TORCH_ACTIVATIONS[activation]}()"]
    # .double(): without it load_state_dict would round the float64 weights into float32 silently.
    return f"torch.nn.Sequential({', '.join(parts)}).double()"


def _describe(position: int, name: str, module) -> str:
    """``module 3 of the Sequential (Dropout(p=0.5, inplace=False))``: its position and a one-line picture."""
    shown = repr(module)
    if "\n" in shown or len(shown) > 80:          # a container or a long custom repr: its class is enough
        shown = type(module).__name__
    label = f"module {position}" if name == str(position) else f"module {position} ({name!r})"
    return f"{label} of the Sequential ({shown})"


def _floats(torch, tensor, where: str, what: str) -> list[float]:
    """The tensor's numbers as Python floats, row by row; a named error for any that are not finite reals."""
    if tensor.is_complex() or not tensor.is_floating_point():
        raise UnsupportedModuleError(f"{where} holds its {what} as {tensor.dtype}; chainrule needs real "
                                     f"floats (convert the module with .double())")
    values = tensor.detach().to("cpu", torch.float64).reshape(-1).tolist()
    for i, x in enumerate(values):
        if not math.isfinite(x):
            index = ", ".join(str(k) for k in _unravel(i, tensor.shape))
            raise UnsupportedModuleError(f"{where} has {what}[{index}] = {x}, not a finite number "
                                         f"(did training diverge?)")
    return values


def _unravel(flat: int, shape) -> list[int]:
    """The row-major index of entry ``flat`` in a tensor of this shape: 5 in (2, 3) is [1, 2]."""
    index = []
    for size in reversed(shape):
        flat, k = divmod(flat, size)
        index.append(k)
    return index[::-1]


def from_torch(module) -> MLP:
    """The ``MLP`` with ``module``'s architecture and a copy of its weights.

    ``module`` is a ``torch.nn.Sequential`` of ``Linear`` layers (with bias), each followed by at
    most one of ``ReLU``, ``Tanh``, ``Sigmoid``, ``Identity`` (no activation module means
    ``"linear"``). The hidden layers share one activation and the last layer may have its own, as
    ``MLP(nin, nouts, activation=..., output_activation=...)`` does. Anything else (a ``Conv2d``, a
    ``Dropout``, a ``Linear(..., bias=False)``, a nested ``Sequential``) raises
    ``UnsupportedModuleError`` naming the module and its position. float32 weights are read exactly
    (every float32 is a float64); the ``MLP`` then computes in float64. Python's ``random`` state is
    left as it was.

    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> from_torch(torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2)))
    MLP(3 -> 5 tanh -> 2 linear, 32 parameters)
    >>> from_torch(torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Dropout(0.5)))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    chainrule.bridge.UnsupportedModuleError: module 1 of the Sequential (Dropout(p=0.5, inplace=False)) is not ...
    """
    torch = _torch()
    nn = torch.nn
    if type(module) is not nn.Sequential:
        raise UnsupportedModuleError(f"from_torch takes a torch.nn.Sequential of Linear and activation modules, "
                                     f"got {type(module).__name__}; wrap a single layer as "
                                     f"torch.nn.Sequential(layer)")
    activation_of = {getattr(nn, cls): name for name, cls in TORCH_ACTIVATIONS.items()}
    supported = "Linear layers, each followed by at most one of " + ", ".join(TORCH_ACTIVATIONS.values())
    # layers: [nin, nout, activation, parameters, position of the Linear, position of the activation]
    layers: list[list] = []
    for position, (name, child) in enumerate(module.named_children()):
        where = _describe(position, name, child)
        # Exact types, not isinstance: a subclass may compute something else in its forward.
        if type(child) is nn.Linear:
            if child.bias is None:
                raise UnsupportedModuleError(f"{where} has no bias, but every chainrule neuron has one: "
                                             f"build it with bias=True (a zero bias computes the same)")
            if layers and child.in_features != layers[-1][1]:
                raise UnsupportedModuleError(f"{where} takes {child.in_features} inputs, but the layer before "
                                             f"it gives {layers[-1][1]}")
            weight = _floats(torch, child.weight, where, "weight")
            bias = _floats(torch, child.bias, where, "bias")
            nin, nout = child.in_features, child.out_features
            # model.parameters() order: per neuron its weights, then its bias.
            params = [x for j in range(nout) for x in weight[j * nin:(j + 1) * nin] + [bias[j]]]
            layers.append([nin, nout, "linear", params, position, None])
        elif type(child) in activation_of:
            if not layers:
                raise UnsupportedModuleError(f"{where} comes before any Linear; an MLP starts with a Linear layer")
            if layers[-1][5] is not None:
                raise UnsupportedModuleError(f"{where} follows another activation; each Linear takes at most "
                                             f"one activation module")
            layers[-1][2], layers[-1][5] = activation_of[type(child)], position
        else:
            if isinstance(child, nn.Sequential):
                hint = " (flatten it into one Sequential)"
            elif isinstance(child, nn.Dropout):
                hint = " (remove it: in eval mode dropout passes its input through unchanged)"
            elif isinstance(child, (nn.Linear, *activation_of)):
                base = next(cls for cls in (nn.Linear, *activation_of) if isinstance(child, cls))
                hint = f" (a subclass of {base.__name__} may compute something else; use {base.__name__} itself)"
            else:
                hint = ""
            raise UnsupportedModuleError(f"{where} is not supported{hint}: from_torch reads {supported}")
    if not layers:
        raise UnsupportedModuleError(f"the Sequential has no Linear layer; from_torch reads {supported}")
    hidden = layers[0][2] if len(layers) > 1 else layers[-1][2]
    for i, (_, _, activation, _, linear_at, act_at) in enumerate(layers[:-1]):
        if activation != hidden:
            at = linear_at if act_at is None else act_at
            raise UnsupportedModuleError(f"module {at} of the Sequential makes hidden layer {i} {activation!r}, but "
                                         f"hidden layer 0 is {hidden!r}: an MLP's hidden layers share one "
                                         f"activation (only the last layer may differ)")
    d = {"format": FORMAT, "version": VERSION, "nin": layers[0][0], "nouts": [layer[1] for layer in layers],
         "activation": hidden, "output_activation": layers[-1][2],
         "parameters": [x for layer in layers for x in layer[3]]}
    return model_from_dict(d, where="from_torch")
