"""Pictures: decision boundary, training curves, function with tangent, saving, and the lazy matplotlib import."""

import math
import subprocess
import sys

import numpy as np
import pytest

from chainrule import MLP
from chainrule.data import make_blobs, make_moons
from chainrule.train import History, predict

pytest.importorskip("matplotlib")
from matplotlib.figure import Figure  # noqa: E402

from chainrule.plot import plot_decision_boundary, plot_function, plot_history, save_figure  # noqa: E402


def _f(x):
    return 3 * x**2 - 4 * x + 5


def test_decision_boundary_colours_match_the_models_predictions():
    """The filled regions are the model's predicted classes on the grid (score > 0 is class 1), and the
    data points are coloured by their labels."""
    X, y = make_moons(20, noise=0.1, seed=0)
    model = MLP(2, [6, 1], activation="relu", output_activation="linear")
    fig = plot_decision_boundary(model, X, y, resolution=30, compiled=False, margin=0.5)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    contour = next(c for c in ax.collections if hasattr(c, "levels"))
    assert list(contour.levels) == [-0.5, 0.5, 1.5]
    scatter = next(c for c in ax.collections if c.get_offsets().shape == (20, 2))
    np.testing.assert_array_equal(scatter.get_array(), y)
    # The same grid, rebuilt here: the filled region of class 1 holds exactly the grid points the
    # model scores above 0 (a random model predicts both classes somewhere on it).
    (x0, y0), (x1, y1) = X.min(axis=0) - 0.5, X.max(axis=0) + 0.5
    assert ax.get_xlim() == pytest.approx((x0, x1)) and ax.get_ylim() == pytest.approx((y0, y1))
    xx, yy = np.meshgrid(np.linspace(x0, x1, 30), np.linspace(y0, y1, 30))
    grid = np.c_[xx.ravel(), yy.ravel()]
    positive = predict(model, grid) > 0
    assert 0 < positive.sum() < len(grid)
    inside = ((grid > [x0, y0]) & (grid < [x1, y1])).all(axis=1)     # the frame's edge is ambiguous
    region_of_class_1 = contour.get_paths()[1]
    np.testing.assert_array_equal(region_of_class_1.contains_points(grid[inside]), positive[inside])


def test_decision_boundary_grid_compiled_equals_eager():
    """Evaluating the boundary grid with the compiled replay gives the same classes as without it."""
    pytest.importorskip("chainrule.replay")
    model = MLP(2, [8, 8, 1], activation="relu", output_activation="linear")
    xx, yy = np.meshgrid(np.linspace(-2, 3, 40), np.linspace(-1.5, 2, 40))
    grid = np.c_[xx.ravel(), yy.ravel()]
    np.testing.assert_allclose(predict(model, grid, compiled=True), predict(model, grid), rtol=1e-12, atol=1e-13)


def test_decision_boundary_for_several_classes_and_bad_inputs():
    """With C outputs the regions are the argmax classes 0..C-1; a model that does not take 2 inputs is
    refused with a clear error."""
    X, y = make_blobs(15, seed=1)
    model = MLP(2, [4, 3], activation="relu", output_activation="linear")
    fig = plot_decision_boundary(model, X, y, resolution=12, compiled=False)
    mesh = fig.axes[0].collections[0]
    (x0, y0), (x1, y1) = X.min(axis=0) - 0.5, X.max(axis=0) + 0.5
    xx, yy = np.meshgrid(np.linspace(x0, x1, 12), np.linspace(y0, y1, 12))
    expected = np.argmax(predict(model, np.c_[xx.ravel(), yy.ravel()]), axis=1)
    assert len(set(expected.tolist())) > 1
    np.testing.assert_array_equal(np.asarray(mesh.get_array()).ravel(), expected)
    with pytest.raises(ValueError, match="must take 2 inputs, it takes 3"):
        plot_decision_boundary(MLP(3, [2, 1]), np.zeros((2, 3)), [0, 1])


def test_history_plot_draws_the_recorded_curves():
    """plot_history draws the training loss and accuracy (in %) per step, and the test points where measured."""
    h = History(loss=[1.0, 0.5, 0.25], accuracy=[0.5, 0.75, 1.0], lr=[1, 1, 1],
                test_step=[0, 2], test_loss=[1.1, 0.4], test_accuracy=[0.5, 0.9])
    fig = plot_history(h)
    loss_ax, acc_ax = fig.axes
    assert list(loss_ax.lines[0].get_ydata()) == [1.0, 0.5, 0.25]
    assert list(acc_ax.lines[0].get_ydata()) == [50.0, 75.0, 100.0]
    assert list(loss_ax.lines[1].get_xdata()) == [0, 2] and list(acc_ax.lines[1].get_ydata()) == [50.0, 90.0]
    with pytest.raises(ValueError, match="empty"):
        plot_history(History())


def test_function_plot_tangent_has_the_backward_slope():
    """The lecture's f(x) = 3x^2 - 4x + 5 at x0 = 3: the tangent goes through (3, 20) with slope 14
    (6*3 - 4); for a float-only function the slope comes from central differences (cos for sin)."""
    fig = plot_function(_f, 3.0)
    curve, tangent = fig.axes[0].lines[:2]
    np.testing.assert_allclose(curve.get_ydata(), [_f(x) for x in curve.get_xdata()])
    (xa, xb), (ya, yb) = tangent.get_xdata(), tangent.get_ydata()
    assert (yb - ya) / (xb - xa) == pytest.approx(14.0, rel=1e-12)
    assert ya + 14.0 * (3.0 - xa) == pytest.approx(20.0)
    assert "backward()" in tangent.get_label()
    fig = plot_function(math.sin, 0.5, x_range=(0, 2))
    (xa, xb), (ya, yb) = fig.axes[0].lines[1].get_xdata(), fig.axes[0].lines[1].get_ydata()
    assert (yb - ya) / (xb - xa) == pytest.approx(math.cos(0.5), rel=1e-8)
    assert "central difference" in fig.axes[0].lines[1].get_label()


def test_drawing_into_given_axes():
    """Given axes, the functions draw there and return that axes' figure."""
    fig = Figure()
    ax = fig.subplots()
    assert plot_function(_f, 1.0, ax=ax) is fig


def test_save_figure_writes_png_and_svg(tmp_path):
    """save_figure picks the format from the suffix, creates missing folders, and refuses unknown suffixes."""
    fig = plot_function(_f, 3.0)
    png = save_figure(fig, tmp_path / "a" / "f.png")
    svg = save_figure(fig, tmp_path / "f.svg")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in svg.read_bytes()[:500]
    with pytest.raises(ValueError, match=r"\.png, \.svg or \.pdf"):
        save_figure(fig, tmp_path / "f.jpeg")


def test_missing_matplotlib_gives_an_install_hint(monkeypatch):
    """Without matplotlib, plotting raises ImportError naming the plot extra."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r'pip install "chainrule\[plot\]"'):
        plot_function(_f, 3.0)


def test_importing_and_plotting_do_not_touch_pyplot_or_the_backend():
    """Importing chainrule.plot (or chainrule.train) imports no matplotlib (or tqdm); outside a notebook,
    plotting and saving never import pyplot, so no global backend is chosen."""
    code = ("import sys, chainrule.plot as p, chainrule.train\n"
            "assert 'matplotlib' not in sys.modules and 'tqdm' not in sys.modules\n"
            "p.save_figure(p.plot_function(lambda x: x * x, 1.0), sys.argv[1])\n"
            "assert 'matplotlib.pyplot' not in sys.modules\n")
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.executable, "-c", code, f"{d}/x.png"], check=True)
