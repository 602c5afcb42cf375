"""An experiment: one flat, strictly checked configuration and one run that writes its outputs.

``CONFIG`` holds every setting with its default and a line of help. ``resolve_config`` lays
overrides over the defaults and checks each value; ``run`` trains as the configuration says,
prints the progress and the result, and writes the model, the resolved configuration, the history
and the pictures into one folder. ``chainrule train`` is these two calls with a flag per key.

>>> import tempfile
>>> config = resolve_config({"dataset": "xor", "hidden": "4", "steps": 2, "out": tempfile.mkdtemp()})
>>> result = run(config)        # doctest: +ELLIPSIS
training MLP(2 -> 4 relu -> 1 linear, 17 parameters)
on xor: 100 examples; hinge loss, sgd lr 1 falling to 0.1, 2 steps
...
>>> [path.name for path in result.written][:3]
['model.json', 'config.json', 'history.json']
"""

from __future__ import annotations

import difflib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data import DATASETS, train_test_split
from .losses import LOSSES
from .nn import ACTIVATIONS, MLP
from .optim import OPTIMIZERS
from .serialize import save_model
from .train import History, evaluate, fit, seed_everything

__all__ = ["CONFIG", "ConfigError", "RunResult", "Setup", "flag", "prepare", "resolve_config", "run"]


# The settings: one flat block of defaults, each with its help text. Every key is also a flag of
# ``chainrule train`` (``batch_size`` is ``--batch-size``), and the error messages name the flag.
# The resolved configuration is saved as config.json beside the outputs. The defaults are
# micrograd's demo.
CONFIG: dict[str, tuple] = {
    "dataset":    ("moons",      "the data: moons, circles, blobs, spirals, xor, lecture, digits"),
    "n_samples":  (None,         "examples to draw (default 100; the lecture set and digits: all of them)"),
    "noise":      (None,         "standard deviation of the noise on the points (default 0.1; "
                                 "lecture and digits take none)"),
    "test_size":  (0.0,          "fraction (or number) of examples held out for testing; 0 keeps all for training"),
    "hidden":     ("16,16",      "widths of the hidden layers, comma-separated ('' for none); "
                                 "the output layer is added: 1 score for two classes, else one per class"),
    "activation": ("relu",       "the hidden layers' activation: tanh, relu, sigmoid, linear (the output is linear)"),
    "loss":       ("auto",       "auto (hinge for two classes, cross_entropy for more), hinge, bce, cross_entropy, "
                                 "mse, sse"),
    "optimizer":  ("sgd",        "sgd, adam, adamw"),
    "lr":         (None,         "learning rate (default 1.0 for sgd, 0.01 for adam and adamw)"),
    "schedule":   ("linear",     "linear: the rate falls from lr to 0.1*lr over the run (micrograd's); constant"),
    "l2":         (1e-4,         "weight of the L2 penalty l2 * sum(p*p) over all parameters"),
    "steps":      (100,          "optimizer steps"),
    "batch_size": (0,            "examples per step; 0 uses all of them every step"),
    "seed":       (1337,         "seeds the data, the initial weights and the batch order"),
    "compiled":   (False,        "record the loss once and replay it with numpy (faster, same numbers)"),
    "out":        ("runs/moons", "folder for model.json, config.json, history.json and the pictures"),
}
_FIXED_DATASETS = ("lecture", "digits")     # datasets that take no n_samples default and no noise
_SCHEDULES = ("linear", "constant")
_DEFAULT_LR = {"sgd": 1.0, "adam": 0.01, "adamw": 0.01}


class ConfigError(ValueError):
    """A setting that is unknown or has a value the experiment cannot use."""


@dataclass
class RunResult:
    """What ``run`` produced: the trained model, its history, the final loss and accuracy on the
    training data, the configuration as run (``loss`` "auto" made concrete) and the files written."""

    model: MLP
    history: History
    loss: float
    accuracy: float
    config: dict
    written: list[Path] = field(default_factory=list)


def flag(key: str) -> str:
    """The command-line flag for a configuration key.

    >>> flag("batch_size")
    '--batch-size'
    """
    return "--" + key.replace("_", "-")


def resolve_config(overrides: dict) -> dict:
    """``CONFIG``'s defaults with ``overrides`` laid over them, every value checked and typed.

    Values may be text (as flags give them) or already typed; an unknown key, or a value of the
    wrong kind, raises ``ConfigError`` naming the setting by its flag. The defaults that depend on
    other settings are filled in (``lr`` by optimizer, ``n_samples`` and ``noise`` by dataset);
    resolving a resolved configuration gives it back unchanged.

    >>> config = resolve_config({"optimizer": "adam", "steps": "50", "hidden": "8"})
    >>> config["lr"], config["steps"], config["hidden"], config["loss"]
    (0.01, 50, [8], 'auto')
    >>> resolve_config(config) == config
    True
    >>> resolve_config({"steps": "0"})
    Traceback (most recent call last):
    chainrule.experiment.ConfigError: --steps must be >= 1, got '0'
    >>> resolve_config({"stpes": 50})       # doctest: +ELLIPSIS
    Traceback (most recent call last):
    chainrule.experiment.ConfigError: unknown setting 'stpes' (did you mean 'steps'?); the settings are: dataset, ...
    """
    unknown = [key for key in overrides if key not in CONFIG]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), CONFIG, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown setting {unknown[0]!r}{hint}; the settings are: {', '.join(CONFIG)}")
    c = {key: overrides.get(key, default) for key, (default, _) in CONFIG.items()}
    c["dataset"] = _choice("dataset", c["dataset"], list(DATASETS))
    c["activation"] = _choice("activation", c["activation"], list(ACTIVATIONS))
    c["loss"] = _choice("loss", c["loss"], ["auto", *LOSSES])
    c["optimizer"] = _choice("optimizer", c["optimizer"], list(OPTIMIZERS))
    c["schedule"] = _choice("schedule", c["schedule"], _SCHEDULES)
    c["hidden"] = _parse_hidden(c["hidden"])
    fixed = c["dataset"] in _FIXED_DATASETS
    if c["n_samples"] is not None:
        c["n_samples"] = _number("n_samples", c["n_samples"], int, low=1)
    elif not fixed:
        c["n_samples"] = 100
    if c["noise"] is not None:
        c["noise"] = _number("noise", c["noise"], float, low=0)
    elif not fixed:
        c["noise"] = 0.1
    test_size = _number("test_size", c["test_size"], float, low=0)
    c["test_size"] = int(test_size) if test_size >= 1 and test_size.is_integer() else test_size
    c["lr"] = _number("lr", c["lr"], float, low=0, low_open=True) if c["lr"] is not None \
        else _DEFAULT_LR.get(c["optimizer"], 0.01)
    c["l2"] = _number("l2", c["l2"], float, low=0)
    c["steps"] = _number("steps", c["steps"], int, low=1)
    c["batch_size"] = _number("batch_size", c["batch_size"], int, low=0)
    c["seed"] = _number("seed", c["seed"], int, low=0)
    c["compiled"] = _boolean("compiled", c["compiled"])
    if not isinstance(c["out"], (str, os.PathLike)):
        raise ConfigError(f"{flag('out')} must be a folder name, got {c['out']!r}")
    c["out"] = str(c["out"])
    return c


def run(config: dict) -> RunResult:
    """Train as ``config`` says, print the progress and the result, and write the outputs.

    ``config`` is checked by ``resolve_config`` first (missing keys take their defaults), so a
    mistake raises ``ConfigError`` before anything is trained or written. The folder ``out`` then
    gets model.json, config.json (the configuration as run), history.json and, with matplotlib,
    loss_curve.png and (for 2 inputs) decision_boundary.png.

    >>> import tempfile
    >>> result = run({"dataset": "lecture", "hidden": "4", "activation": "tanh", "loss": "mse",
    ...               "steps": 3, "out": tempfile.mkdtemp()})       # doctest: +ELLIPSIS
    training MLP(3 -> 4 tanh -> 1 linear, 21 parameters)
    on lecture: 4 examples; mse loss, sgd lr 1 falling to 0.1, 3 steps
    ...
    >>> len(result.history.loss), result.config["n_samples"], result.written[0].name
    (3, None, 'model.json')
    """
    config = resolve_config(config)
    out = Path(config["out"])
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{flag('out')} {out}: exists and is not a folder")
    if config["compiled"]:
        try:
            from . import replay  # noqa: F401
        except ImportError:
            raise ConfigError(f"{flag('compiled')} needs chainrule.replay, which this installation lacks") from None

    setup = prepare(config)
    model, X, y, X_test, y_test = setup.model, setup.X, setup.y, setup.X_test, setup.y_test
    lr, steps = config["lr"], config["steps"]
    rate = (lambda k: lr * (1.0 - 0.9 * k / steps)) if config["schedule"] == "linear" else lr
    optimizer = OPTIMIZERS[config["optimizer"]](model.parameters(), lr=rate)

    held_out = f", {len(X_test)} held out for testing" if X_test is not None else ""
    print(f"training {model!r}")
    falling = f" falling to {0.1 * lr:g}" if config["schedule"] == "linear" else ""
    print(f"on {config['dataset']}: {len(X)} examples{held_out}; {config['loss']} loss, {config['optimizer']} "
          f"lr {lr:g}{falling}, {steps} steps")
    start = time.perf_counter()
    history = fit(model, X, y, loss=config["loss"], optimizer=optimizer, steps=steps,
                  batch_size=config["batch_size"], l2=config["l2"], X_test=X_test, y_test=y_test,
                  compiled=config["compiled"], seed=config["seed"])
    seconds = time.perf_counter() - start
    loss, acc = evaluate(model, X, y, loss=config["loss"], l2=config["l2"])
    tested = f" | test accuracy {history.test_accuracy[-1]:.1%}" if history.test_accuracy else ""
    print(f"final loss {loss:.4f} | accuracy {acc:.1%}{tested} ({len(history)} steps in {seconds:.1f} s)")

    written = _write_outputs(out, model, history, config, X, y)
    if X.shape[1] <= 4:
        print(f"try: chainrule predict --model {out / 'model.json'} " + ",".join(f"{v:g}" for v in X[0]))
    return RunResult(model, history, loss, acc, config, written)


@dataclass
class Setup:
    """What a configuration makes before training: the data (split), the fresh model, the classes."""

    model: MLP
    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray | None
    y_test: np.ndarray | None
    n_classes: int


def prepare(config: dict) -> Setup:
    """Seed everything, draw the data, split it and build the model, as ``config`` (resolved) says.

    ``config["loss"]`` "auto" is made concrete here (hinge for two classes, else cross_entropy), in
    place, so that whoever trains next uses the loss the model was built for.

    >>> setup = prepare(resolve_config({"dataset": "xor", "hidden": "4", "test_size": 0.25}))
    >>> setup.model, setup.X.shape, setup.X_test.shape, setup.n_classes
    (MLP(2 -> 4 relu -> 1 linear, 17 parameters), (75, 2), (25, 2), 2)
    """
    seed_everything(config["seed"])
    X, y = DATASETS[config["dataset"]](n_samples=config["n_samples"], noise=config["noise"], seed=config["seed"])
    # Class numbers count up from 0 even when a small sample misses one; the lecture's +-1 floats are two.
    n_classes = int(y.max()) + 1 if np.issubdtype(y.dtype, np.integer) else len(np.unique(y))
    X_test = y_test = None
    if config["test_size"]:
        X, X_test, y, y_test = train_test_split(X, y, test_size=config["test_size"], seed=config["seed"])
    width = 1 if n_classes <= 2 else n_classes
    if config["loss"] == "auto":
        config["loss"] = "hinge" if width == 1 else "cross_entropy"
    model = MLP(X.shape[1], config["hidden"] + [width], activation=config["activation"],
                output_activation="linear")
    return Setup(model, X, y, X_test, y_test, max(n_classes, 2))


def _write_outputs(out: Path, model: MLP, history: History, config: dict, X, y) -> list[Path]:
    """Write the model, the configuration, the history and the pictures; print what was written."""
    out.mkdir(parents=True, exist_ok=True)
    written = [save_model(model, out / "model.json", metadata={"config": config})]
    for name, content in (("config.json", config), ("history.json", history.to_dict())):
        (out / name).write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
        written.append(out / name)
    try:
        from .plot import plot_decision_boundary, plot_history, save_figure
        if X.shape[1] == 2:
            written.append(save_figure(plot_decision_boundary(model, X, y, compiled=config["compiled"] or None),
                                       out / "decision_boundary.png"))
        written.append(save_figure(plot_history(history), out / "loss_curve.png"))
        hint = ""
    except ImportError as exc:
        hint = f"no pictures: {exc}"
    print(f"wrote {', '.join(path.name for path in written)} to {out}{os.sep}")
    if hint:
        print(hint)
    return [Path(path) for path in written]


def _choice(key: str, value, valid) -> str:
    if value not in valid:
        raise ConfigError(f"{flag(key)}: unknown {key} {value!r}; choose one of: {', '.join(valid)}")
    return value


def _number(key: str, text, kind=float, low: float | None = None, low_open: bool = False):
    what = "a whole number" if kind is int else "a number"
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = text
        if kind is int and isinstance(value, float):
            if not value.is_integer():
                raise ConfigError(f"{flag(key)} must be {what}, got {text!r}")
            value = int(value)
    else:
        try:
            value = kind(str(text).strip())
        except ValueError:
            raise ConfigError(f"{flag(key)} must be {what}, got {text!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{flag(key)} must be a finite number, got {text!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise ConfigError(f"{flag(key)} must be {'>' if low_open else '>='} {low:g}, got {text!r}")
    return kind(value)


def _boolean(key: str, value) -> bool:
    # bool("false") is True: text has to be read, never just truth-tested.
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1"):
        return True
    if text in ("false", "no", "0", ""):
        return False
    raise ConfigError(f"{flag(key)} must be true or false, got {value!r}")


def _parse_hidden(text) -> list[int]:
    if isinstance(text, (list, tuple)):
        # Already widths (a resolved configuration): check them as the text form is checked.
        text = ",".join(str(width) for width in text)
    text = str(text).strip()
    if text in ("", "none"):
        return []
    widths = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise ConfigError(f"{flag('hidden')} must be comma-separated positive whole numbers like 16,16 "
                              f"(or '' for no hidden layer), got {text!r}")
        widths.append(int(part))
    return widths
