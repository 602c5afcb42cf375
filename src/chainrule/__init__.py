"""chainrule: backpropagation you can read, watch, check and run fast.

>>> from chainrule import Value
>>> x = Value(2.0, label="x"); y = x * x + 3 * x
>>> y.backward(); x.grad
7.0
"""

from .engine import Value, no_grad
from .nn import MLP, Layer, Module, Neuron

__version__ = "0.1.0"

__all__ = [
    "Layer",
    "MLP",
    "Module",
    "Neuron",
    "Value",
    "no_grad",
]
