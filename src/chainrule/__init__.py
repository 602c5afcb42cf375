"""chainrule: backpropagation you can read, watch, check and run fast.

>>> from chainrule import Value
>>> x = Value(2.0, label="x"); y = x * x + 3 * x
>>> y.backward(); x.grad
7.0
"""

from .engine import Value, enable_grad, grad, no_grad, primitive
from .walkthrough import explain, step_through
from .expr import ExpressionError, build_expression, parse_expression
from .numerical import gradcheck, numerical_derivative
from .losses import bce_with_logits, hinge_loss, l2_penalty, mse_loss, softmax_cross_entropy, sse_loss
from .nn import MLP, Layer, Module, Neuron
from .optim import SGD, Adam, AdamW
from .replay import ReplayMismatchError, compile
from .serialize import ModelFileError, load_model, save_model
from .train import History, fit, predict, seed_everything
from .viz import draw_dot, trace
from .liveview import live

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
    "ReplayMismatchError",
    "SGD",
    "Value",
    "bce_with_logits",
    "build_expression",
    "compile",
    "draw_dot",
    "enable_grad",
    "explain",
    "fit",
    "grad",
    "gradcheck",
    "hinge_loss",
    "l2_penalty",
    "live",
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
    "trace",
]
