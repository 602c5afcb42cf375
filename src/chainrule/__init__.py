"""chainrule: backpropagation you can read, watch, check and run fast.

>>> from chainrule import Value
>>> x = Value(2.0, label="x"); y = x * x + 3 * x
>>> y.backward(); x.grad
7.0
"""

# Where each public name lives. Importing chainrule loads none of these modules: each is imported
# the first time one of its names is used (PEP 562), so ``chainrule``'s command line starts at
# once, and Ctrl-C at any moment of it is one line instead of a traceback from the imports.
_HOMES = {
    "engine": ["Value", "enable_grad", "grad", "is_grad_enabled", "no_grad", "primitive"],
    "walkthrough": ["explain", "step_through"],
    "expr": ["ExpressionError", "build_expression", "parse_expression"],
    "numerical": ["gradcheck", "numerical_derivative"],
    "losses": ["bce_with_logits", "hinge_loss", "l2_penalty", "mse_loss", "softmax_cross_entropy", "sse_loss"],
    "nn": ["MLP", "Layer", "Module", "Neuron"],
    "optim": ["SGD", "Adam", "AdamW"],
    "replay": ["NotReplayableError", "ReplayMismatchError", "compile", "vmap"],
    "serialize": ["ModelFileError", "load_model", "save_model"],
    "bridge": ["UnsupportedModuleError", "from_torch", "to_torch"],
    "train": ["History", "fit", "predict", "seed_everything"],
    "viz": ["draw_dot", "trace"],
    "liveview": ["live"],
}
_HOME = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str):
    import importlib

    module = _HOME.get(name)
    if module is None:
        if name.startswith("__"):
            raise AttributeError(name)
        try:                                        # a submodule: chainrule.engine, chainrule.cli, ...
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


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
    "to_torch",
    "trace",
    "vmap",
]
