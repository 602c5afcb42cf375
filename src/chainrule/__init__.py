"""chainrule: backpropagation you can read, watch, check and run fast.

>>> from chainrule import Value
>>> x = Value(2.0, label="x"); y = x * x + 3 * x
>>> y.backward(); x.grad
7.0
"""

from .engine import Value, enable_grad, grad, is_grad_enabled, no_grad, primitive
from .walkthrough import explain, step_through
from .expr import ExpressionError, build_expression, parse_expression
from .numerical import gradcheck, numerical_derivative
from .losses import bce_with_logits, hinge_loss, l2_penalty, mse_loss, softmax_cross_entropy, sse_loss
from .nn import MLP, Layer, Module, Neuron
from .optim import SGD, Adam, AdamW
from .replay import NotReplayableError, ReplayMismatchError, compile, vmap
from .serialize import ModelFileError, load_model, save_model
from .bridge import UnsupportedModuleError, from_torch, to_torch
from .train import History, fit, predict, seed_everything
from .viz import draw_dot, trace

__version__ = "0.1.0"

__all__ = [
    "Adam",
    "AdamW",
    "ExpressionError",
    "History",
    "Layer",
    "MLP",
    "ModelFileError",
    "Module",
    "Neuron",
    "NotReplayableError",
    "ReplayMismatchError",
    "SGD",
    "UnsupportedModuleError",
    "Value",
    "bce_with_logits",
    "build_expression",
    "compile",
    "draw_dot",
    "enable_grad",
    "explain",
    "fit",
    "from_torch",
    "grad",
    "gradcheck",
    "hinge_loss",
    "is_grad_enabled",
    "l2_penalty",
    "load_model",
    "mse_loss",
    "no_grad",
    "numerical_derivative",
    "parse_expression",
    "predict",
    "primitive",
    "save_model",
    "seed_everything",
    "softmax_cross_entropy",
    "sse_loss",
    "step_through",
    "to_torch",
    "trace",
    "vmap",
]
