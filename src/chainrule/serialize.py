"""Save and load an ``MLP``'s architecture and weights as JSON (never pickle: loading runs no code).

A model file looks like this (``parameters`` in ``model.parameters()`` order: per neuron its
weights then its bias, neurons in order, layers in order)::

    {"format": "chainrule-mlp", "version": 1, "nin": 2, "nouts": [16, 16, 1],
     "activation": "relu", "output_activation": "linear", "parameters": [0.12, -0.5, ...],
     "metadata": {...}}

``metadata`` is optional: any JSON object the caller wants kept beside the weights (a training
configuration, say). Loading checks the whole file first (JSON syntax, format and version, the
type of every field, the number of parameters against the architecture, every number finite) and
raises ``ModelFileError`` naming the first thing wrong; only then is a model built, so a bad file
never gives a half-loaded model.

>>> import random; random.seed(0)
>>> from chainrule import MLP
>>> model = MLP(2, [3, 1], activation="relu", output_activation="linear")
>>> copy = model_from_dict(model_to_dict(model))
>>> copy, copy([0.5, -1.0]).data == model([0.5, -1.0]).data
(MLP(2 -> 3 relu -> 1 linear, 13 parameters), True)
"""

from __future__ import annotations

import json
import math
import numbers
import os
import random
import secrets
import stat
from pathlib import Path
from typing import Callable

from .nn import ACTIVATIONS, MLP
from .text import printable

__all__ = ["FORMAT", "VERSION", "ModelFileError", "load_model", "model_from_dict", "model_to_dict", "save_model",
           "write_atomically"]

FORMAT = "chainrule-mlp"
VERSION = 1
_REQUIRED = ("format", "version", "nin", "nouts", "activation", "output_activation", "parameters")
_OPTIONAL = ("metadata",)
MAX_WIDTH = 1_000_000           # no layer of a model file is wider (a 4,000-digit width is not a model)
MAX_FILE_BYTES = 256 * 2**20    # nor is any model file larger (a 1,000,000-parameter model is about 20 MB)


class ModelFileError(ValueError):
    """A model file (or dict) that cannot be loaded; the message names the file and what is wrong."""


def _architecture(model: MLP) -> tuple[str, str]:
    """(hidden activation, output activation), checking every neuron agrees with that description."""
    if not isinstance(model, MLP):
        raise TypeError(f"only an MLP can be saved, got {type(model).__name__}")
    layers = model.layers
    output = layers[-1].activation
    hidden = layers[0].activation if len(layers) > 1 else output
    for i, layer in enumerate(layers):
        expected = output if i == len(layers) - 1 else hidden
        for neuron in layer.neurons:
            if neuron.activation != expected:
                raise ValueError(f"cannot save this MLP: layer {i} has a neuron with activation "
                                 f"{neuron.activation!r} where {expected!r} was expected; the file format "
                                 f"holds one hidden activation and one output activation")
    return hidden, output


def model_to_dict(model: MLP, metadata: dict | None = None) -> dict:
    """The JSON-ready description of ``model``: architecture plus every parameter as a float.

    >>> import random; random.seed(0)
    >>> from chainrule import MLP
    >>> d = model_to_dict(MLP(3, [4, 1]))
    >>> d["format"], d["nin"], d["nouts"], d["activation"], len(d["parameters"])
    ('chainrule-mlp', 3, [4, 1], 'tanh', 21)
    """
    hidden, output = _architecture(model)
    params = [p.data for p in model.parameters()]
    for i, x in enumerate(params):
        if not math.isfinite(x):
            raise ValueError(f"cannot save this MLP: parameter {i} is {x} (did training diverge?)")
    out = {"format": FORMAT, "version": VERSION, "nin": model.nin, "nouts": model.nouts,
           "activation": hidden, "output_activation": output, "parameters": params}
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
        out["metadata"] = metadata
    return out


def _count_parameters(nin: int, nouts: list[int]) -> int:
    sizes = [nin] + nouts
    return sum((sizes[i] + 1) * sizes[i + 1] for i in range(len(nouts)))


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _shown(x) -> str:
    """``repr(x)``, short and printable: file contents can be huge numbers or hold escape codes."""
    if _is_int(x) and abs(x) >= 10**30:
        return f"a number of about {int(x.bit_length() * 0.30103) + 1} digits"
    if isinstance(x, list) and any(_is_int(v) and abs(v) >= 10**30 for v in x):
        return "a list holding a number of hundreds of digits"
    text = printable(repr(x))
    return text if len(text) <= 60 else text[:57] + "..."


def _validate(d, where: str) -> tuple[int, list[int], str, str, list[float]]:
    """Check everything about a model dict; return its pieces, or raise ModelFileError naming the problem."""
    def fail(message: str):
        raise ModelFileError(f"{where}: {message}")

    if not isinstance(d, dict):
        fail(f"expected a JSON object at the top level, found {type(d).__name__}")
    if d.get("format") != FORMAT:
        fail(f"not a chainrule model file (expected \"format\": \"{FORMAT}\", found {_shown(d.get('format'))})")
    version = d.get("version")
    if not _is_int(version):
        fail(f"\"version\" must be a whole number, found {_shown(version)}")
    if version != VERSION:
        fail(f"file format version {_shown(version)} is not supported (this chainrule reads version {VERSION}); "
             f"a newer chainrule may have written it")
    missing = [key for key in _REQUIRED if key not in d]
    if missing:
        fail(f"missing field(s): {', '.join(missing)}")
    unknown = sorted(key for key in d if key not in _REQUIRED + _OPTIONAL)
    if unknown:
        fail(f"unknown field(s): {', '.join(_shown(key) for key in unknown[:5])}")
    nin = d["nin"]
    if not _is_int(nin) or not 1 <= nin <= MAX_WIDTH:
        fail(f"\"nin\" must be a whole number from 1 to {MAX_WIDTH:,}, found {_shown(nin)}")
    nouts = d["nouts"]
    if not isinstance(nouts, list) or not nouts or not all(_is_int(n) and 1 <= n <= MAX_WIDTH for n in nouts):
        fail(f"\"nouts\" must be a non-empty list of whole numbers from 1 to {MAX_WIDTH:,}, found {_shown(nouts)}")
    for key in ("activation", "output_activation"):
        if not isinstance(d[key], str) or d[key] not in ACTIVATIONS:
            fail(f"\"{key}\" must be one of {', '.join(ACTIVATIONS)}; found {_shown(d[key])}")
    if "metadata" in d and not isinstance(d["metadata"], dict):
        fail(f"\"metadata\" must be a JSON object, found {type(d['metadata']).__name__}")
    params = d["parameters"]
    if not isinstance(params, list):
        fail(f"\"parameters\" must be a list of numbers, found {type(params).__name__}")
    expected = _count_parameters(nin, nouts)
    if len(params) != expected:
        fail(f"expected {expected} parameters for MLP({nin}, {nouts}), found {len(params)}")
    floats = []
    for i, x in enumerate(params):
        if isinstance(x, bool) or not isinstance(x, numbers.Real):
            fail(f"parameters[{i}] must be a number, found {_shown(x)}")
        try:
            x = float(x)
        except OverflowError:
            fail(f"parameters[{i}] is too large for a float")
        if not math.isfinite(x):
            fail(f"parameters[{i}] is {x}, not a finite number")
        floats.append(x)
    return nin, nouts, d["activation"], d["output_activation"], floats


def model_from_dict(d: dict, where: str = "model") -> MLP:
    """Build the MLP a ``model_to_dict`` dict describes; ``ModelFileError`` if anything is wrong.

    Building does not disturb Python's ``random`` state, so loading a model in the middle of a
    seeded run changes nothing downstream.

    >>> model_from_dict({"format": "chainrule-mlp", "version": 1, "nin": 1, "nouts": [1],
    ...                  "activation": "linear", "output_activation": "linear", "parameters": [2.0, 0.5]})([3.0]).data
    6.5
    """
    nin, nouts, activation, output_activation, params = _validate(d, where)
    state = random.getstate()
    try:
        model = MLP(nin, nouts, activation=activation, output_activation=output_activation)
    finally:
        random.setstate(state)
    for p, x in zip(model.parameters(), params):
        p.data = x
    return model


def save_model(model: MLP, path, metadata: dict | None = None) -> Path:
    """Write ``model`` to ``path`` as JSON and return the path; missing parent folders are created.

    The file is written beside its final name and then renamed over it, so an interrupted save never
    leaves half a file. ``metadata`` (a dict of JSON values) is stored with the weights.

    >>> import random, tempfile; random.seed(0)
    >>> from chainrule import MLP
    >>> folder = tempfile.TemporaryDirectory()             # stands in for a folder of your own
    >>> path = save_model(MLP(2, [4, 1]), f"{folder.name}/runs/model.json")
    >>> path.name, path.exists()
    ('model.json', True)
    >>> folder.cleanup()
    """
    path = Path(path)
    text = json.dumps(model_to_dict(model, metadata), allow_nan=False)
    if path.is_dir():
        raise IsADirectoryError(f"cannot save the model to {path}: it is a folder; "
                                f"give a file name such as {path / 'model.json'}")
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.write("\n")

    write_atomically(path, write)
    return path


def write_atomically(path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary name beside ``path``, then rename it over ``path``, so an
    interrupted write never leaves half a file; on any failure the temporary file is removed.

    >>> import tempfile
    >>> folder = tempfile.TemporaryDirectory()
    >>> target = Path(folder.name) / "notes.txt"
    >>> write_atomically(target, lambda tmp: tmp.write_text("hello"))
    >>> target.read_text(), sorted(p.name for p in target.parent.iterdir())
    ('hello', ['notes.txt'])
    >>> folder.cleanup()
    """
    path = Path(path)
    # A plain name (not tempfile) so the file gets the usual permissions from the umask; short and
    # of its own, so that any name the folder allows for ``path`` also works for this one.
    tmp = path.with_name(f".chainrule-{secrets.token_hex(4)}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            # Name the file the caller asked for, not the hidden one used on the way.
            raise OSError(exc.errno, f"cannot write {printable(path)}: {exc.strerror or exc}") from None
        raise


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a finite number")


def load_model(path) -> MLP:
    """Read a model written by ``save_model``. Any problem with the file, including a missing or
    unreadable file, raises ``ModelFileError`` (a ValueError) naming the file and what is wrong.

    >>> import random, tempfile; random.seed(0)
    >>> from chainrule import MLP
    >>> folder = tempfile.TemporaryDirectory()
    >>> saved = MLP(2, [4, 1])
    >>> model = load_model(save_model(saved, f"{folder.name}/model.json"))
    >>> model([0.5, -0.2]).data == saved([0.5, -0.2]).data
    True
    >>> folder.cleanup()
    """
    where = printable(path)
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            # A FIFO would block forever and /dev/zero never ends: only plain files are read.
            raise ModelFileError(f"{where}: not a regular file (a folder, device or pipe), so not a model file")
        if info.st_size > MAX_FILE_BYTES:
            raise ModelFileError(f"{where}: {info.st_size:,} bytes is larger than any model file "
                                 f"({MAX_FILE_BYTES // 2**20} MiB at most)")
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise ModelFileError(f"{where}: larger than any model file ({MAX_FILE_BYTES // 2**20} MiB at most)")
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise ModelFileError(f"{where}: no such file") from None
    except UnicodeDecodeError:
        raise ModelFileError(f"{where}: not a text (UTF-8) file, so not a model file") from None
    except OSError as err:
        raise ModelFileError(f"{where}: cannot read it ({err.strerror or err})") from None
    try:
        # parse_constant turns NaN/Infinity (which Python's json accepts, standard JSON does not) into errors.
        d = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as err:
        raise ModelFileError(f"{where}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") from None
    except ValueError as err:
        if "integer string conversion" in str(err):     # Python refuses ints over 4,300 digits
            raise ModelFileError(f"{where}: holds a number thousands of digits long, so not a model file") from None
        raise ModelFileError(f"{where}: {printable(err)}") from None
    except RecursionError:
        raise ModelFileError(f"{where}: JSON nested too deeply to be a model file") from None
    return model_from_dict(d, where)
