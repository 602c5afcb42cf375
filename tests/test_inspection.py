"""explain and step_through only look: no .grad changes, and every line reads one way (issue 12, items 13-14)."""

import io

import pytest

from chainrule import Value, explain, step_through
from chainrule.engine import topological_order
from lecture import neuron


def grads(root):
    return [v.grad for v in topological_order(root)]


@pytest.mark.parametrize("look", [lambda o: explain(o, file=io.StringIO()), step_through],
                         ids=["explain", "step_through"])
def test_looking_leaves_every_grad_as_it_was(look):
    """After o.backward(), explain(o) or step_through(o) (twice) leaves every gradient where backward put it."""
    o, nodes = neuron()
    o.backward()
    before = grads(o)
    assert nodes["x1"].grad == pytest.approx(-1.5)
    look(o)
    look(o)
    assert grads(o) == before
    assert nodes["x1"].grad == pytest.approx(-1.5)


@pytest.mark.parametrize("look", [lambda o: explain(o, file=io.StringIO()), step_through],
                         ids=["explain", "step_through"])
def test_looking_before_backward_changes_nothing_either(look):
    """Before any backward, looking leaves every gradient at 0, so a later backward gives the lecture's numbers."""
    o, nodes = neuron()
    look(o)
    assert all(g == 0.0 for g in grads(o))
    o.backward()
    assert nodes["x1"].grad == pytest.approx(-1.5) and nodes["w1"].grad == pytest.approx(1.0)


def test_explain_shows_a_fresh_pass_even_after_backward():
    """The printed steps are backward's from zero gradients: the same text before and after o.backward()."""
    o, _ = neuron()
    first = explain(o, file=io.StringIO())
    o.backward()
    assert explain(o, file=io.StringIO()) == first
    assert "(now" not in first                     # no leaf is used twice in the neuron


def test_gradients_are_restored_when_a_step_fails():
    """A rule that raises mid-pass still leaves the gradients as they were."""
    x = Value(2.0, label="x")
    y = x * 3
    y.backward()
    bad = Value(1.0, (y,), "no-such-op")
    with pytest.raises(NotImplementedError):
        explain(bad, file=io.StringIO())
    assert x.grad == 3.0 and y.grad == 1.0


def test_explain_as_a_cells_last_line_shows_the_table_once():
    """In a notebook the returned text displays as nothing (the table was printed already)."""
    from IPython.core.interactiveshell import InteractiveShell

    x = Value(2.0, label="x")
    text = explain(x * x, file=io.StringIO())
    assert isinstance(text, str) and "x.grad" in text
    formatted, _ = InteractiveShell.instance().display_formatter.format(text)
    assert formatted == {}


def test_negative_numbers_are_parenthesised_and_digits_are_significant():
    """(1 - (-0.5)**2), not (1 - -0.5000**2); a tiny product is shown in digits that multiply out."""
    n = Value(-0.5493061443340549, label="n")
    o = n.tanh(); o.label = "o"
    line = explain(o, file=io.StringIO()).splitlines()[1]
    assert "(1 - (-0.5)**2) * 1 -> 0.75" in line
    a = Value(-3.0, label="a"); b = Value(3.3e-5, label="b")
    text = explain(a * b, file=io.StringIO())
    assert "(-3) * 1" in text and "3.3e-05 * 1" in text and "0.0000" not in text


def test_labels_with_operators_are_parenthesised():
    """A label like 'x1*w1 + b' is written (x1*w1 + b).grad, never x1*w1 + b.grad."""
    x1 = Value(2.0, label="x1"); w1 = Value(-3.0, label="w1"); b = Value(1.0, label="b")
    s = x1 * w1 + b; s.label = "x1*w1 + b"
    o = s.tanh(); o.label = "tanh(x1*w1 + b)"
    text = explain(o, file=io.StringIO())
    assert any(line.startswith("(x1*w1 + b).grad ") for line in text.splitlines())
    assert " x1*w1 + b.grad" not in text
    assert text.splitlines()[0].startswith("tanh(x1*w1 + b).grad")   # a call reads one way already
