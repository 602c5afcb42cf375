"""Arguments and results: what a compiled function accepts, feeds into its inputs, and returns.

A *spec* describes one argument of a recording: ``("float", shape)`` is data (fed anew every
call), ``("baked", value)`` is structure passed to ``fn`` unchanged (ints, bools, None) that a
later call must repeat, and ``("seq", specs)`` is a ragged list or tuple of further specs.
A Value anywhere in an argument, a string, or another object is refused with a named error.

Results are flattened into a list of Values and a *tree*: a flat list of tokens (``"["``,
``"("``, an output number, ``"]"``) that rebuilds the nesting without recursion, so an output
nested thousands of lists deep works.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..engine import Value
from .errors import ReplayMismatchError

__all__ = ["describe", "feed", "flatten", "make_values", "rebuild", "spec_of", "tree_shape"]

_MAX_DEPTH = 64


def spec_of(x, where: str, depth: int = 0):
    if isinstance(x, Value):
        raise TypeError(f"{where} is a Value; a compiled function takes plain numbers as arguments "
                        f"(pass {where}.data). Values that fn captures, like a model's weights, are its "
                        f"parameters and need no passing")
    if depth > _MAX_DEPTH:
        raise TypeError(f"{where} is nested more than {_MAX_DEPTH} lists deep; pass a numpy array")
    if x is None or isinstance(x, (str, bool, np.bool_)):
        if isinstance(x, str):
            raise TypeError(f"{where} is the string {x[:20]!r}; a compiled function takes numbers, not text "
                            f"(convert it with float() first)")
        return ("baked", x)
    if isinstance(x, numbers.Integral):
        return ("baked", int(x))
    if isinstance(x, numbers.Real):
        return ("float", ())
    if isinstance(x, (np.ndarray, list, tuple)):
        try:
            a = np.asarray(x)
        except ValueError:          # ragged
            a = None
        if a is not None and a.dtype.kind == "f":
            return ("float", a.shape)
        if a is not None and a.dtype.kind in "iub":
            return ("baked", a.copy())
        if a is not None and a.dtype.kind in "USV":
            raise TypeError(f"{where} holds strings; a compiled function takes numbers, not text")
        if isinstance(x, (list, tuple)):
            return ("seq", tuple(spec_of(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(x)))
        raise TypeError(f"{where}: a numpy array of dtype {a.dtype} cannot be an argument; use floats")
    raise TypeError(f"{where}: a compiled function takes numbers, lists, tuples and numpy arrays, "
                    f"got {type(x).__name__}")


def describe(spec) -> str:
    kind, payload = spec
    if kind == "float":
        return "a float number" if payload == () else f"floats of shape {payload}"
    if kind == "seq":
        return f"a list of {len(payload)} mixed items"
    if isinstance(payload, np.ndarray):
        return f"integers of shape {payload.shape} (baked in)"
    return f"{payload!r} (baked in)"


def _difference(recorded, got, where: str) -> str | None:
    if recorded[0] != got[0]:
        return f"{where}: recorded {describe(recorded)}, got {describe(got)}"
    kind, a = recorded
    b = got[1]
    if kind == "float":
        return None if a == b else f"{where}: recorded floats of shape {a}, got shape {b}"
    if kind == "seq":
        if len(a) != len(b):
            return f"{where}: recorded a list of {len(a)} items, got {len(b)}"
        for i, (ra, gb) in enumerate(zip(a, b)):
            diff = _difference(ra, gb, f"{where}[{i}]")
            if diff:
                return diff
        return None
    same = (np.array_equal(a, b) and np.shape(a) == np.shape(b)) if isinstance(a, np.ndarray) \
        or isinstance(b, np.ndarray) else (type(a) is type(b) and a == b)
    if same:
        return None
    return (f"{where}: recorded {describe(recorded)}, got {describe(got)}; integers are structure "
            f"(they may steer fn, like a label picking a logit), so they must repeat exactly. "
            f"Pass changing numbers as floats (e.g. y.astype(float))")


def as_floats(x, where: str) -> np.ndarray:
    """``x`` as a float array, refusing Values, strings and other objects (never parsing text)."""
    if type(x) is np.ndarray and x.dtype.kind in "fiu":
        return x
    spec = spec_of(x, where)
    if spec[0] == "seq":
        raise ReplayMismatchError(f"{where}: expected a regular array of numbers, got a ragged list")
    return np.asarray(x, dtype=float)


def feed(spec, x, vals: np.ndarray, offset: int, where: str) -> int:
    """Write argument ``x`` (matching ``spec``) into ``vals`` from ``offset``; return the next offset."""
    kind, payload = spec
    if kind == "float":
        a = as_floats(x, where) if not isinstance(x, float) else x
        shape = np.shape(a)
        if shape != payload:
            raise ReplayMismatchError(f"{where}: recorded floats of shape {payload}, got shape {shape}")
        size = math.prod(payload)
        vals[offset:offset + size] = np.reshape(a, -1)
        return offset + size
    if kind == "seq":
        if not isinstance(x, (list, tuple)) or len(x) != len(payload):
            raise ReplayMismatchError(_difference(spec, spec_of(x, where), where)
                                      or f"{where}: structure differs from the recording")
        for i, (s, item) in enumerate(zip(payload, x)):
            offset = feed(s, item, vals, offset, f"{where}[{i}]")
        return offset
    diff = _difference(spec, spec_of(x, where), where)
    if diff:
        raise ReplayMismatchError(diff)
    return offset


def make_values(spec, x, inputs: list):
    """What ``fn`` receives while recording: float data as fresh Values (nested lists for arrays)."""
    kind, payload = spec
    if kind == "baked":
        return x
    if kind == "seq":
        return [make_values(s, item, inputs) for s, item in zip(payload, x)]
    a = np.asarray(x, dtype=float)
    flat = [Value(v) for v in a.ravel().tolist()]
    inputs.extend(flat)
    if a.ndim == 0:
        return flat[0]
    for n in reversed(a.shape[1:]):
        flat = [flat[i:i + n] for i in range(0, len(flat), n)]
    return flat


# --- results -------------------------------------------------------------------------------------

def flatten(out) -> tuple[list, list[Value]]:
    """``(tree, roots)`` of fn's result, without recursion."""
    roots: list[Value] = []
    tree: list = []
    stack = [out]
    while stack:
        item = stack.pop()
        if isinstance(item, str):           # a closing token pushed below
            tree.append(item)
        elif isinstance(item, Value):
            tree.append(len(roots))
            roots.append(item)
        elif isinstance(item, (list, tuple)):
            tree.append("(" if isinstance(item, tuple) else "[")
            stack.append(")" if isinstance(item, tuple) else "]")
            stack.extend(reversed(item))
        else:
            raise TypeError(f"a compiled function must return a Value or a (nested) list/tuple of Values, "
                            f"got {type(item).__name__}")
    return tree, roots


def rebuild(tree: list, leaf):
    """The nested result, with ``leaf(k)`` for output number k."""
    stack: list[list] = [[]]
    for token in tree:
        if token in ("[", "("):
            stack.append([])
        elif token in ("]", ")"):
            items = stack.pop()
            stack[-1].append(tuple(items) if token == ")" else items)
        else:
            stack[-1].append(leaf(token))
    return stack[0][0]


def tree_shape(tree: list) -> tuple | None:
    """The shape of a rectangular nested list of outputs, or None when ragged."""
    stack: list[list] = [[]]
    for token in tree:
        if token in ("[", "("):
            stack.append([])
        elif token in ("]", ")"):
            shapes = stack.pop()
            if len(set(shapes)) > 1:
                return None
            stack[-1].append((len(shapes),) + (shapes[0] if shapes else ()))
        else:
            stack[-1].append(())
    return stack[0][0]
