"""The numbers of one live frame: the boundary grid, the curves thinned, JSON-safe floats.

>>> finite([1.0, float("nan"), float("inf")])
[1.0, None, None]
>>> len(curves({"step": list(range(1000)), "loss": [0.5] * 1000, "acc": [1.0] * 1000,
...             "test_step": [], "test_loss": [], "test_acc": []})["loss"]) <= CURVE_POINTS
True
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["CURVE_POINTS", "FPS", "GRID", "boundary", "curves", "finite"]

FPS = 40            # frames published per second, at most
GRID = 48           # the decision boundary is evaluated on GRID x GRID points
CURVE_POINTS = 400  # the curves are sent with at most this many points each


def boundary(forward, extent: list[float]) -> dict:
    """The model's output over a GRID x GRID grid of ``extent`` (x0, x1, y0, y1), top row first.

    ``forward`` is the compiled model (:func:`chainrule.compile`): one batched replay evaluates the
    whole grid. One output is sent as tanh(score), in (-1, 1); several as the winning class.
    """
    x0, x1, y0, y1 = extent
    xs, ys = np.linspace(x0, x1, GRID), np.linspace(y1, y0, GRID)      # top row first, as drawn
    grid = np.array(np.meshgrid(xs, ys)).reshape(2, -1).T
    scores = forward.batch(grid)
    if scores.ndim == 1:
        values = {"kind": "score", "values": finite(np.round(np.tanh(scores), 3))}
    else:
        values = {"kind": "class", "values": np.argmax(scores, axis=1).tolist()}
    return dict(values, n=GRID, extent=list(extent))


def finite(values) -> list:
    """Numbers for JSON: nan and inf (a diverged run) become null, which the page shows as such."""
    array = np.asarray(values, dtype=float)
    if np.isfinite(array).all():
        return array.tolist()
    return [v if math.isfinite(v) else None for v in array.tolist()]


def curves(history: dict) -> dict:
    """The history thinned to at most CURVE_POINTS points per curve (the last point always kept)."""
    out = {}
    for prefix in ("", "test_"):
        n = len(history[prefix + "step"])
        keep = np.unique(np.linspace(0, n - 1, CURVE_POINTS).astype(int)) if n > CURVE_POINTS else np.arange(n)
        out[prefix + "step"] = [history[prefix + "step"][i] for i in keep]
        for key in ("loss", "acc"):
            out[prefix + key] = finite([history[prefix + key][i] for i in keep])
    return out
