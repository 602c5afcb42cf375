"""Drawings a learner can read (issue 12, items 15-18): names by place, a step-through page at
natural size, a labelled decision boundary, plain log lines off a terminal."""

import io
import random
import sys

import pytest

from chainrule import MLP, draw_dot, explain, fit, step_through
from chainrule.losses import mse_loss
from test_browser import MISSING, browser, chromium_path  # noqa: F401  (browser is a fixture)


# --- item 15 --------------------------------------------------------------------------------------

def test_parameters_are_named_by_place_and_the_lecture_numbers_repeat():
    """MLP parameters are labelled L{layer}.N{neuron}.w{input} / .b, all different, and the draws are unchanged."""
    random.seed(1337)
    model = MLP(3, [4, 4, 1])
    names = [name for name, _ in model.named_parameters()]
    assert names[:5] == ["L0.N0.w0", "L0.N0.w1", "L0.N0.w2", "L0.N0.b", "L0.N1.w0"] and names[-1] == "L2.N0.b"
    assert [p.label for p in model.parameters()] == names and len(set(names)) == 41
    assert [p for _, p in model.named_parameters()] == model.parameters()
    random.seed(1337)
    lecture = [random.uniform(-1, 1) for _ in range(41)]     # the lecture's draws, in parameters() order
    assert [p.data for p in model.parameters()] == lecture
    assert model.layers[1].neurons[2].w[3].label == "L1.N2.w3"


def test_loss_drawing_has_no_identical_parameter_boxes():
    """draw_dot of an MLP's loss shows each parameter under its own name, and captions never say node<i> for an op."""
    random.seed(0)
    model = MLP(2, [3, 1])
    loss = mse_loss([model([0.5, -1.0])], [1.0])
    source = draw_dot(loss, max_nodes=None).source
    for name, _ in model.named_parameters():
        assert source.count("{ " + name.replace(".", ".") + " |") == 1, name
    text = explain(loss, file=io.StringIO())
    targets = [line.split(".grad")[0] for line in text.splitlines()]
    interior = [t for t in targets if t.startswith("node")]
    leaves = {f"node{i}" for i, v in enumerate(__import__("chainrule").engine.topological_order(loss))
              if not v._prev}
    assert set(interior) <= leaves          # only unlabelled constants are called node<i>
    assert len(set(targets[1:])) >= len(model.parameters())


def test_fan_in_init_is_an_option():
    """init='fan_in' scales each neuron's draws by nin**-0.5; the default stays the lecture's uniform(-1, 1)."""
    random.seed(5)
    wide = MLP(100, [3], init="fan_in")
    random.seed(5)
    plain = MLP(100, [3])
    for a, b in zip(wide.parameters(), plain.parameters()):
        assert a.data == pytest.approx(b.data / 10)
    with pytest.raises(ValueError, match="unknown init"):
        MLP(2, [1], init="xavier")


# --- item 16 --------------------------------------------------------------------------------------

@pytest.mark.skipif(MISSING is not None, reason=MISSING or "")
@pytest.mark.parametrize("width", [1280, 600])
def test_step_through_page_is_readable_at_natural_size(browser, tmp_path, width):  # noqa: F811
    """An MLP's step-through at 1280x800 and 600x800: labels at least 11 px, the drawing scrolls instead
    of shrinking, zoom works, and the drawing does not move as captions change length."""
    random.seed(0)
    model = MLP(3, [4, 1])
    loss = mse_loss([model([0.5, -1.0, 2.0])], [1.0])
    path = step_through(loss).save(tmp_path / "steps.html")
    page = browser.new_page(viewport={"width": width, "height": 800})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    size = "el => parseFloat(getComputedStyle(el).fontSize) * el.getScreenCTM().a"
    label = ".crs-frame.crs-on g.node text"
    assert page.eval_on_selector(label, size) >= 11
    view = page.locator(".crs-frame.crs-on .crs-view")
    assert page.eval_on_selector(".crs-frame.crs-on .crs-view", "el => el.scrollWidth > el.clientWidth")
    tops = []
    captions = []
    for _ in range(4):
        tops.append(view.bounding_box()["y"])
        captions.append(page.locator(".crs-frame.crs-on .crs-caption").inner_text().count("\n"))
        page.click(".crs-next")
    assert len(set(captions)) > 1 and len(set(tops)) == 1, (captions, tops)
    page.screenshot(path=str(tmp_path / f"steps-{width}.png"))
    page.click(".crs-out")
    assert page.locator(".crs-zoom").inner_text() == "80%"
    assert page.eval_on_selector(label, size) < 11 + 5          # zoomed out: smaller than natural
    page.click(".crs-actual")
    assert page.eval_on_selector(label, size) >= 11
    assert errors == []
    page.close()


# --- item 17 --------------------------------------------------------------------------------------

def test_decision_boundary_has_axis_labels_a_class_legend_and_a_padded_title():
    """The picture names its axes, has a legend entry per class, and its title sits off the plot's edge."""
    from chainrule.data import make_blobs
    from chainrule.plot import plot_decision_boundary
    X, y = make_blobs(30, seed=0)
    random.seed(0)
    fig = plot_decision_boundary(MLP(2, [4, 3], activation="relu", output_activation="linear"), X, y,
                                 resolution=20, compiled=False)
    ax = fig.axes[0]
    assert ax.get_xlabel() and ax.get_ylabel()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["class 0", "class 1", "class 2"]
    assert ax.title.get_position()[1] >= 1.0 and ax.titleOffsetTrans.transform((0, 0))[1] > 0


# --- item 18 --------------------------------------------------------------------------------------

def test_progress_off_a_terminal_is_plain_log_lines(capsys):
    """With stderr not a terminal, fit prints plain step lines and no progress bar."""
    random.seed(0)
    model = MLP(2, [4, 1], activation="relu", output_activation="linear")
    fit(model, [[0.0, 1.0], [1.0, 0.0]], [1, 0], steps=12, progress=True, log_every=5)
    captured = capsys.readouterr()
    assert captured.err == ""
    assert [line.split(" |")[0] for line in captured.out.splitlines()] == ["step 0", "step 5", "step 10", "step 11"]
    assert "\r" not in captured.out


def test_mlp_drawings_group_nodes_per_neuron():
    """An MLP's loss draws one dashed box per neuron (its parameters, products, sums and activation);
    the lecture's hand-built neuron draws none."""
    from chainrule.viz import neuron_groups
    from chainrule.engine import topological_order
    from lecture import neuron
    random.seed(0)
    model = MLP(2, [3, 1])
    loss = mse_loss([model([0.5, -1.0]), model([1.0, 2.0])], [1.0, -1.0])
    source = draw_dot(loss, max_nodes=None).source
    assert sorted(line.split('label="')[1].split('"')[0] for line in source.splitlines() if "subgraph cluster" in line) \
        == ["L0.N0", "L0.N1", "L0.N2", "L1.N0"]
    groups = neuron_groups(topological_order(loss))
    # per example, a neuron of the first layer has 2 products, 2 sums and 1 activation, plus its 3 parameters
    assert sum(1 for g in groups.values() if g == "L0.N1") == 3 + 2 * 5
    assert loss not in {v for v in topological_order(loss) if id(v) in groups}
    assert "subgraph cluster" not in draw_dot(neuron()[0]).source


def test_step_through_boxes_carry_the_caption_names():
    """Unlabelled boxes in the step-through show the names the captions use, so a caption's node can be found."""
    random.seed(0)
    model = MLP(2, [2, 1])
    out = model([0.5, -1.0])
    frame = step_through(out).frames[0]
    boxes = {line.split('label="{ ')[1].split(" |")[0] for line in frame.source.splitlines() if "shape=record" in line}
    targets = {line.split(".grad")[0] for line in frame.caption.splitlines()}
    assert targets <= boxes and "" not in boxes
    assert any(name.startswith("(L1.N0.w0*") for name in boxes)       # a product keeps its weight's name
