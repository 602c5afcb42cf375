"""An experiment: one flat, strictly checked configuration and one run that writes its outputs.

``CONFIG`` holds every setting with its default and a line of help. ``resolve_config`` lays
overrides over the defaults and checks each value; ``run`` trains as the configuration says,
prints the progress and the result, and writes the model, the resolved configuration, the history
and the pictures into one folder. ``chainrule train`` is these two calls with a flag per key.

>>> import tempfile
>>> config = resolve_config({"dataset": "xor", "hidden": "4", "steps": 2, "out": tempfile.mkdtemp()})
>>> result = run(config)        # doctest: +ELLIPSIS
training MLP(2 -> 4 relu -> 1 linear, 17 parameters)
on xor: 100 examples; hinge loss, adam lr 0.05 falling to 0.005, 2 steps
...
>>> [path.name for path in result.written][:3]
['model.json', 'config.json', 'history.json']
"""

from __future__ import annotations

import difflib
import json
import math
import os
import shutil
import signal
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data import DATASETS, train_test_split
from .losses import LOSSES
from .nn import ACTIVATIONS, INITS, MLP
from .optim import OPTIMIZERS
from .serialize import save_model
from .text import number, printable
from .train import DivergedError, History, evaluate, fit, seed_everything

__all__ = ["BYTES_PER_NODE", "CONFIG", "ConfigError", "DATASET_DEFAULTS", "OUTPUTS", "RunResult", "Setup",
           "defaults_table", "flag", "graph_size", "prepare", "resolve_config", "run"]


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
    "init":       ("uniform",    "initial weights: uniform (the lecture's, in [-1, 1]) or fan_in (that times "
                                 "1/sqrt(inputs); trains wide layers better)"),
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
    "out":        (None,         "folder for model.json, config.json, history.json and the pictures "
                                 "(default: runs/DATASET)"),
}
_FIXED_DATASETS = ("lecture", "digits")     # datasets that take no n_samples default and no noise

# Per dataset, the settings that differ from the defaults above (which are micrograd's demo, on
# moons), chosen so that each dataset trains well as it is: the accuracy each reaches is in
# tests/test_first_hour_defaults.py. A learning rate here goes with that dataset's optimizer: give
# another --optimizer and the rate defaults to that optimizer's.
DATASET_DEFAULTS: dict[str, dict] = {
    "moons":   {},
    "circles": {"noise": 0.05, "optimizer": "adam", "lr": 0.02, "steps": 300},
    "blobs":   {"optimizer": "adam", "lr": 0.05},
    "spirals": {"n_samples": 200, "optimizer": "adam", "lr": 0.03, "steps": 300},
    "xor":     {"optimizer": "adam", "lr": 0.05, "steps": 200},
    "lecture": {"hidden": "4,4", "activation": "tanh", "loss": "mse", "lr": 0.1, "schedule": "constant",
                "steps": 50},
    "digits":  {"hidden": "32", "optimizer": "adam", "lr": 0.01, "steps": 300, "batch_size": 32,
                "compiled": True},
}
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
    dataset = _choice("dataset", overrides.get("dataset", CONFIG["dataset"][0]), list(DATASETS))
    tuned = dict(DATASET_DEFAULTS.get(dataset, {}))
    if "lr" in tuned and "optimizer" in overrides and overrides["optimizer"] != tuned.get("optimizer", "sgd"):
        del tuned["lr"]          # the tuned rate belongs to the tuned optimizer
    c = {key: overrides.get(key, tuned.get(key, default)) for key, (default, _) in CONFIG.items()}
    c["dataset"] = dataset
    c["activation"] = _choice("activation", c["activation"], list(ACTIVATIONS))
    c["init"] = _choice("init", c["init"], list(INITS))
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
    if c["out"] is None:
        c["out"] = os.path.join("runs", dataset)
    if not isinstance(c["out"], (str, os.PathLike)):
        raise ConfigError(f"{flag('out')} must be a folder name, got {c['out']!r}")
    c["out"] = str(c["out"])
    return c


def run(config: dict, *, overwrite: bool = False) -> RunResult:
    """Train as ``config`` says, print the progress and the result, and write the outputs.

    ``config`` is checked by ``resolve_config`` first (missing keys take their defaults), so a
    mistake raises ``ConfigError`` before anything is trained or written. So does an ``out`` that
    cannot be written, one that already holds a run's files (unless ``overwrite=True``: the rule
    of every chainrule command is that nothing existing is overwritten without ``--force``), and a
    model whose training graph would not fit in memory. The folder ``out`` then gets model.json,
    config.json (the configuration as run), history.json and, with matplotlib, loss_curve.png and
    (for 2 inputs) decision_boundary.png: all of them or, if the run fails or is interrupted,
    none (they are written into a hidden folder first and moved in at the end).

    >>> import tempfile
    >>> result = run({"dataset": "lecture", "hidden": "4", "activation": "tanh", "loss": "mse",
    ...               "steps": 3, "out": tempfile.mkdtemp()})       # doctest: +ELLIPSIS
    training MLP(3 -> 4 tanh -> 1 linear, 21 parameters)
    on lecture: 4 examples; mse loss, sgd lr 0.1, 3 steps
    ...
    >>> len(result.history.loss), result.config["n_samples"], result.written[0].name
    (3, None, 'model.json')
    """
    config = resolve_config(config)
    out = Path(config["out"])
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{flag('out')} {printable(out)}: exists and is not a folder")
    clashes = [name for name in OUTPUTS if (out / name).exists()]
    if clashes and not overwrite:
        raise ConfigError(f"{flag('out')} {printable(out)} already has {', '.join(clashes)}; pass --force to "
                          "overwrite them, or choose another --out")
    if config["compiled"]:
        try:
            from . import replay  # noqa: F401
        except ImportError:
            raise ConfigError(f"{flag('compiled')} needs chainrule.replay, which this installation lacks") from None

    setup = prepare(config)
    X, y, X_test, y_test = setup.X, setup.y, setup.X_test, setup.y_test
    batch = config["batch_size"] if 0 < config["batch_size"] < len(X) else len(X)
    _check_graph_size(X.shape[1], setup.model.nouts, batch, config["activation"])
    with _Staging(out) as staging:        # out is writable, checked before the first step
        model = setup.model
        lr, steps = config["lr"], config["steps"]
        rate = (lambda k: lr * (1.0 - 0.9 * k / steps)) if config["schedule"] == "linear" else lr
        optimizer = OPTIMIZERS[config["optimizer"]](model.parameters(), lr=rate)

        held_out = f", {len(X_test)} held out for testing" if X_test is not None else ""
        print(f"training {model!r}")
        falling = f" falling to {0.1 * lr:g}" if config["schedule"] == "linear" else ""
        print(f"on {config['dataset']}: {len(X)} examples{held_out}; {config['loss']} loss, {config['optimizer']} "
              f"lr {lr:g}{falling}, {steps} steps")
        start = time.perf_counter()
        try:
            history = fit(model, X, y, loss=config["loss"], optimizer=optimizer, steps=steps,
                          batch_size=config["batch_size"], l2=config["l2"], X_test=X_test, y_test=y_test,
                          compiled=config["compiled"], seed=config["seed"])
        except DivergedError as exc:
            raise DivergedError(f"loss became {exc.loss} at step {exc.step} with {flag('lr')} {lr:g}: lower the "
                                f"learning rate (or try {flag('optimizer')} adam); nothing was written",
                                exc.step, exc.loss, exc.history) from None
        seconds = time.perf_counter() - start
        loss, acc = evaluate(model, X, y, loss=config["loss"], l2=config["l2"])
        tested = f" | test accuracy {history.test_accuracy[-1]:.1%}" if history.test_accuracy else ""
        print(f"final loss {number(loss)} | accuracy {acc:.1%}{tested} ({len(history)} steps in {seconds:.1f} s)")
        _say_if_near_chance(acc, y, config)
        names, hint = _write_outputs(staging.path, model, history, config, X, y)
        staging.commit(names)
    written = [out / name for name in names]
    print(f"wrote {', '.join(names)} to {printable(out)}{os.sep}")
    if hint:
        print(hint)
    if X.shape[1] <= 4:
        print(f"try: chainrule predict --model {printable(out / 'model.json')} " + ",".join(f"{v:g}" for v in X[0]))
    return RunResult(model, history, loss, acc, config, written)


@dataclass
class Setup:
    """What a configuration makes before training: the data (split) and the fresh model."""

    model: MLP
    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray | None
    y_test: np.ndarray | None


def prepare(config: dict) -> Setup:
    """Seed everything, draw the data, split it and build the model, as ``config`` (resolved) says.

    ``config["loss"]`` "auto" is made concrete here (hinge for two classes, else cross_entropy), in
    place, so that whoever trains next uses the loss the model was built for. ``run`` and
    ``chainrule live`` both start from here.

    >>> setup = prepare(resolve_config({"dataset": "xor", "hidden": "4", "test_size": 0.25}))
    >>> setup.model.nouts, setup.X.shape, setup.X_test.shape
    ([4, 1], (75, 2), (25, 2))
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
                output_activation="linear", init=config["init"])
    return Setup(model, X, y, X_test, y_test)

def _say_if_near_chance(acc: float, y, config: dict) -> None:
    """A run that ends no better than always guessing the commonest class says so, with what to try."""
    _, counts = np.unique(np.asarray(y), return_counts=True)
    chance = counts.max() / counts.sum()
    if acc <= chance + 0.05:
        tips = [] if config["optimizer"] != "sgd" else [f"{flag('optimizer')} adam {flag('lr')} 0.01"]
        tips += [f"a lower {flag('lr')}", f"more {flag('steps')}"]
        if config["init"] != "fan_in":
            tips.append(f"{flag('init')} fan_in")
        print(f"note: accuracy {acc:.1%} is about chance ({chance:.1%} by always guessing the commonest class): "
              f"the model learned next to nothing; try {', '.join(tips)}")


def defaults_table() -> str:
    """The per-dataset defaults as lines of text, for ``chainrule train --help``.

    >>> print([line for line in defaults_table().splitlines() if "moons" in line][0])
      moons    micrograd's demo: the defaults above
    """
    lines = ["defaults per dataset (each flag given overrides its default):"]
    for name in DATASETS:
        tuned = DATASET_DEFAULTS.get(name, {})
        shown = ", ".join(f"{flag(key)} {value}" if value is not True else flag(key) for key, value in tuned.items())
        lines.append(f"  {name:<8} {shown or 'micrograd' + chr(39) + 's demo: the defaults above'}")
    return "\n".join(lines)


# Every file a run writes; a run that overwrites (--force) replaces them all, stale ones included.
OUTPUTS = ("model.json", "config.json", "history.json", "decision_boundary.png", "loss_curve.png")


def _write_outputs(folder: Path, model: MLP, history: History, config: dict, X, y) -> tuple[list[str], str]:
    """Write the model, the configuration, the history and the pictures into ``folder``; return
    their names and a hint when the pictures could not be made."""
    save_model(model, folder / "model.json", metadata={"config": config})
    names = ["model.json"]
    for name, content in (("config.json", config), ("history.json", history.to_dict())):
        (folder / name).write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
        names.append(name)
    hint = ""
    try:
        from .plot import plot_decision_boundary, plot_history, save_figure
        if X.shape[1] == 2:
            save_figure(plot_decision_boundary(model, X, y, compiled=config["compiled"] or None),
                        folder / "decision_boundary.png")
            names.append("decision_boundary.png")
        save_figure(plot_history(history), folder / "loss_curve.png")
        names.append("loss_curve.png")
    except ImportError as exc:
        hint = f"no pictures: {exc}"
    return names, hint


class _Staging:
    """A hidden folder beside (or inside) ``out`` that receives a run's files, moved into ``out``
    at the end: all of them or, when the run fails or is interrupted, none.

    Making it checks that ``out`` is writable before any training. A new ``out`` is the staging
    folder renamed (one atomic step); into an existing one the files are moved one by one with
    Ctrl-C held back for those few microseconds, and older run files this run did not make are removed.
    """

    def __init__(self, out: Path):
        self.out = out
        self.path: Path | None = None
        self.created: list[Path] = []

    def __enter__(self) -> "_Staging":
        where = self.out if self.out.is_dir() else self.out.parent
        missing = []
        folder = where
        while not folder.exists() and folder != folder.parent:
            missing.append(folder)
            folder = folder.parent
        try:
            where.mkdir(parents=True, exist_ok=True)
            self.created = missing
            self.path = Path(tempfile.mkdtemp(prefix=".chainrule-run-", dir=where))
        except OSError as err:
            self._remove_created()
            raise ConfigError(f"{flag('out')} {printable(self.out)}: cannot write there "
                              f"({printable(err.strerror or err)}); choose another --out") from None
        return self

    def commit(self, names: list[str]) -> None:
        with _interrupts_held():
            if not self.out.exists():
                try:
                    os.rename(self.path, self.out)
                    self.path = None
                    return
                except OSError:
                    pass            # out appeared meanwhile: move the files in one by one
            self.out.mkdir(exist_ok=True)
            for name in names:
                os.replace(self.path / name, self.out / name)
            for name in OUTPUTS:
                if name not in names and (self.out / name).exists():
                    (self.out / name).unlink()

    def __exit__(self, kind, error, trace) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
        if kind is not None:
            self._remove_created()

    def _remove_created(self) -> None:
        for folder in self.created:           # innermost first; only if still empty
            try:
                folder.rmdir()
            except OSError:
                break


@contextmanager
def _interrupts_held():
    """Hold back Ctrl-C (SIGINT) until the block is done, then deliver it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


# Measured: a training step's graph takes about 200 bytes per Value (the Value with its slots, its
# tuple of inputs, and the lists that hold the scores), on CPython 3.11, 64-bit.
BYTES_PER_NODE = 200


def graph_size(nin: int, widths: list[int], batch: int, activation: str = "relu") -> int:
    """About how many Values one training step builds: per example, each neuron makes a product
    and a sum per input, a constant per input of the first layer and its activation; then the
    loss and the L2 penalty (three per parameter).

    >>> graph_size(2, [16, 16, 1], 100)        # micrograd's demo: 66,014 counted by the replay
    68811
    """
    sizes = [nin] + list(widths)
    per_example = sum(nout * (2 * fan_in + (fan_in if i == 0 else 0) + (activation != "linear"))
                      for i, (fan_in, nout) in enumerate(zip(sizes, sizes[1:])))
    parameters = sum((fan_in + 1) * nout for fan_in, nout in zip(sizes, sizes[1:]))
    return batch * (per_example + 5 * widths[-1]) + 3 * parameters


def _available_memory() -> int | None:
    """Bytes of memory this machine can still give (Linux's MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def _check_graph_size(nin: int, widths: list[int], batch: int, activation: str) -> None:
    """Refuse, with the numbers, a model whose training step would not fit in memory; warn when
    it would take more than a quarter of it."""
    nodes = graph_size(nin, widths, batch, activation)
    need = nodes * BYTES_PER_NODE
    have = _available_memory()
    if have is None:
        return
    sizes = f"about {nodes:,} Values, {need / 2**30:.1f} GiB"
    fix = "use smaller --hidden widths, a --batch-size, or fewer --n-samples"
    if need > 0.8 * have:
        raise ConfigError(f"one training step would build {sizes}, and this machine has {have / 2**30:.1f} GiB "
                          f"available: {fix}")
    if need > 0.25 * have:
        print(f"warning: one training step builds {sizes} of the {have / 2**30:.1f} GiB available; "
              f"this will be slow ({fix})")


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
        if not (part.isascii() and part.isdigit()) or int(part) < 1:    # "²".isdigit() is True
            raise ConfigError(f"{flag('hidden')} must be comma-separated positive whole numbers like 16,16 "
                              f"(or '' for no hidden layer), got {text!r}")
        widths.append(int(part))
    return widths
