"""Pictures: a classifier's decision boundary, the training curves, a function with its tangent.

matplotlib is optional (``pip install "chainrule[plot]"``) and imported only when a function here
runs. Each function returns a matplotlib ``Figure``: in a notebook it shows inline as a cell's
result; anywhere, ``save_figure(fig, "picture.png")`` writes it. Outside notebooks figures are
made without pyplot, so no window opens and no global backend is chosen (saving renders with Agg).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import numpy as np

from .engine import Value
from .numerical import numerical_derivative
from .nn import MLP
from .train import predict

__all__ = ["plot_decision_boundary", "plot_function", "plot_history", "save_figure"]

_INSTALL_HINT = 'plotting needs matplotlib; install it with: pip install "chainrule[plot]"'


def _matplotlib():
    try:
        import matplotlib
    except ImportError:
        raise ImportError(_INSTALL_HINT) from None
    return matplotlib


def _in_notebook() -> bool:
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def _new_axes(ax, ncols: int = 1, figsize=(6.0, 5.0)):
    """(figure, axes): the given axes' figure, or a new figure with ``ncols`` axes."""
    _matplotlib()
    if ax is not None:
        return ax.figure, ax
    if _in_notebook():
        # Through pyplot so that the notebook's inline display knows the figure; closed at once so
        # it shows once, as the cell's result, and pyplot keeps no reference to it.
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, ncols, figsize=figsize)
        plt.close(fig)
        return fig, axes
    from matplotlib.figure import Figure
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(1, ncols)


def _replay_available() -> bool:
    try:
        from . import replay  # noqa: F401
    except ImportError:
        return False
    return True


def plot_decision_boundary(model: MLP, X, y, ax=None, resolution: int | None = None, compiled: bool | None = None,
                           margin: float = 0.5, title: str | None = None):
    """micrograd's picture: the plane coloured by the class ``model`` predicts, the data on top.

    ``model`` takes 2 inputs. With one output, score > 0 is class 1; with C outputs, the largest
    score wins. ``y`` holds class numbers (0/1 and -1/+1 both work for two classes). The grid has
    ``resolution`` points per side and is evaluated without a graph; ``compiled`` (default: when
    :mod:`chainrule.replay` is present) records the model once and evaluates the whole grid with
    numpy, which allows a fine grid (default 250 per side, else 80).

    >>> import random, tempfile; random.seed(0)
    >>> from chainrule import MLP
    >>> fig = plot_decision_boundary(MLP(2, [4, 1]), [[0, 0], [1, 1]], [0, 1], resolution=40)
    >>> folder = tempfile.TemporaryDirectory()
    >>> save_figure(fig, f"{folder.name}/boundary.png").stat().st_size > 0
    True
    >>> folder.cleanup()
    """
    if model.nin != 2:
        raise ValueError(f"a decision boundary is drawn in the plane: the model must take 2 inputs, it takes {model.nin}")
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y).reshape(-1)
    if X.ndim != 2 or X.shape[1] != 2 or len(X) != len(y) or len(X) == 0:
        raise ValueError(f"X must be n x 2 points with one label each in y, got X {X.shape} and y {y.shape}")
    if compiled is None:
        compiled = _replay_available()
    if resolution is None:
        resolution = 250 if compiled else 80
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 2:
        raise ValueError(f"resolution must be a whole number of grid points per side >= 2, got {resolution!r}")

    fig, ax = _new_axes(ax)          # first: without matplotlib, fail before the grid's work
    width = model.nouts[-1]
    n_classes = max(width, 2)
    classes = (y > 0).astype(int) if width == 1 else y.astype(int)
    (x_min, y_min), (x_max, y_max) = X.min(axis=0) - margin, X.max(axis=0) + margin
    xx, yy = np.meshgrid(np.linspace(x_min, x_max, resolution), np.linspace(y_min, y_max, resolution))
    scores = predict(model, np.c_[xx.ravel(), yy.ravel()], compiled=compiled)
    Z = (scores > 0).astype(int) if width == 1 else np.argmax(scores, axis=1)

    import matplotlib
    cmap = matplotlib.colormaps["Spectral"]
    if n_classes == 2:
        ax.contourf(xx, yy, Z.reshape(xx.shape), levels=[-0.5, 0.5, 1.5], cmap=cmap, vmin=0, vmax=1, alpha=0.8)
    else:
        # contourf would draw a thin band of the middle classes' colours where class 0 meets class 2.
        ax.pcolormesh(xx, yy, Z.reshape(xx.shape), cmap=cmap, vmin=0, vmax=n_classes - 1, alpha=0.8,
                      shading="nearest")
    ax.scatter(X[:, 0], X[:, 1], c=classes, cmap=cmap, vmin=0, vmax=n_classes - 1, s=40, edgecolors="k",
               linewidths=0.5)
    # The legend names each class by its colour (one marker per class, drawn nowhere else).
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], linestyle="", marker="o", markersize=7, markeredgecolor="k", markeredgewidth=0.5,
                      markerfacecolor=cmap(c / max(n_classes - 1, 1)), label=f"class {c}")
               for c in range(n_classes)]
    ax.set_xlim(x_min, x_max)
    ax.set_ylim(y_min, y_max)
    ax.set_xlabel("x[0] (first input)")
    ax.set_ylabel("x[1] (second input)")
    ax.legend(handles=handles, loc="upper right", fontsize=8, framealpha=0.9,
              title="points: data; colour: prediction", title_fontsize=8)
    # pad keeps the title off the plot's edge; wrap=True keeps a long model description inside the figure.
    ax.set_title(title if title is not None else f"decision boundary, {model!r}", fontsize=9, pad=10, wrap=True)
    return fig


def plot_history(history, axes=None, title: str | None = None):
    """Loss and accuracy per step, training and (where measured) test, side by side.

    ``history`` is what :func:`chainrule.train.fit` returned (or its ``to_dict()``);
    ``axes`` an optional pair of matplotlib axes to draw into.

    >>> from chainrule.train import History
    >>> fig = plot_history(History(loss=[1.0, 0.5], accuracy=[0.5, 1.0], lr=[1.0, 0.9]))
    >>> [ax.get_title() for ax in fig.axes]
    ['loss', 'accuracy']
    """
    h = history if isinstance(history, dict) else history.to_dict()
    if not h.get("loss"):
        raise ValueError("the history is empty: nothing to plot")
    if axes is None:
        fig, axes = _new_axes(None, ncols=2, figsize=(10.0, 4.0))
    else:
        fig = axes[0].figure
    steps = np.arange(len(h["loss"]))
    loss_ax, acc_ax = axes
    loss_ax.plot(steps, h["loss"], label="train")
    acc_ax.plot(steps, 100 * np.asarray(h["accuracy"]), label="train")
    if h.get("test_step"):
        loss_ax.plot(h["test_step"], h["test_loss"], "o-", label="test")
        acc_ax.plot(h["test_step"], 100 * np.asarray(h["test_accuracy"]), "o-", label="test")
    loss_ax.set(xlabel="step", ylabel="loss", title="loss")
    acc_ax.set(xlabel="step", ylabel="accuracy (%)", title="accuracy", ylim=(-2, 102))
    for ax, where in ((loss_ax, "upper right"), (acc_ax, "lower right")):
        ax.grid(alpha=0.3)
        ax.legend(loc=where)
    if title:
        fig.suptitle(title)
    return fig


def _slope(f: Callable, x0: float) -> tuple[float, str]:
    """d f / dx at x0 by ``backward()`` when ``f`` works on a Value, else by central differences."""
    x = Value(x0, label="x")
    try:
        out = f(x)
    except TypeError:          # f uses functions that take plain floats only (math.sin, ...)
        out = None
    if isinstance(out, Value):
        out.backward()
        return x.grad, "backward()"
    return numerical_derivative(f, x0), "central difference"


def plot_function(f: Callable, x0: float, ax=None, x_range: tuple[float, float] | None = None, num: int = 200,
                  title: str | None = None):
    """``f`` over ``x_range`` with its tangent at ``x0``: the lecture's first picture.

    The slope comes from ``backward()`` when ``f`` accepts a Value (``3*x**2 - 4*x + 5`` does), else
    from central differences; the legend shows it next to the central difference, which should agree.

    >>> fig = plot_function(lambda x: 3*x**2 - 4*x + 5, 3.0)
    >>> fig.axes[0].get_legend().get_texts()[1].get_text().splitlines()[0]     # 6*x - 4 at x = 3
    'tangent: slope 14 by backward()'
    """
    x0 = float(x0)
    if x_range is None:
        x_range = (min(-5.0, x0 - 1.0), max(5.0, x0 + 1.0))
    lo, hi = map(float, x_range)
    if not lo < hi:
        raise ValueError(f"x_range must be (low, high) with low < high, got {x_range!r}")
    xs = np.linspace(lo, hi, num)
    ys = np.array([float(f(float(x))) for x in xs])
    y0 = float(f(x0))
    slope, how = _slope(f, x0)
    measured = numerical_derivative(f, x0)

    fig, ax = _new_axes(ax)
    ax.plot(xs, ys, label="f(x)")
    half = (hi - lo) / 6
    tx = np.array([x0 - half, x0 + half])
    ax.plot(tx, y0 + slope * (tx - x0), "--", color="C3",
            label=f"tangent: slope {slope:.4g} by {how}" + ("" if how != "backward()" else
                                                            f"\n(central difference: {measured:.4g})"))
    ax.plot([x0], [y0], "o", color="C3")
    ax.annotate(f"x0 = {x0:g}, f(x0) = {y0:.4g}", (x0, y0), textcoords="offset points", xytext=(8, -14),
                fontsize=9)
    ax.set(xlabel="x", ylabel="f(x)", title=title or "a function and its tangent")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center")
    return fig


def save_figure(fig, path, dpi: int = 150) -> Path:
    """Write ``fig`` to ``path``; the suffix picks the format (``.png``, ``.svg`` or ``.pdf``).
    Missing folders are created. Returns the path.

    >>> import tempfile
    >>> from chainrule.train import History
    >>> fig = plot_history(History(loss=[1.0, 0.5], accuracy=[0.5, 1.0], lr=[1.0, 0.9]))
    >>> folder = tempfile.TemporaryDirectory()
    >>> save_figure(fig, f"{folder.name}/demo/history.svg").parent.name       # demo/ is created
    'demo'
    >>> folder.cleanup()
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("png", "svg", "pdf"):
        raise ValueError(f"cannot tell the picture format from {str(path)!r}: use a .png, .svg or .pdf file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format=fmt, dpi=dpi, bbox_inches="tight")
    return path
