"""gradcheck and numerical_derivative: finite differences that agree with correct rules and catch wrong ones."""

import math

import pytest

from chainrule import Value, gradcheck, numerical_derivative
from chainrule.numerical import GradcheckReport, GradcheckRow


def f(x):
    return 3 * x**2 - 4 * x + 5


def test_numerical_derivative_of_the_lecture_parabola():
    """The slope of 3x^2 - 4x + 5 at 3.0 is 14 (and 0 at its minimum x = 2/3)."""
    assert numerical_derivative(f, 3.0) == pytest.approx(14.0, abs=1e-6)
    assert numerical_derivative(f, 2 / 3) == pytest.approx(0.0, abs=1e-6)


def test_central_difference_beats_the_lectures_one_sided_difference():
    """Central differences are far closer to the true slope than the lecture's (f(x+h) - f(x))/h at the same h."""
    h = 1e-3
    one_sided = (f(3.0 + h) - f(3.0)) / h
    assert abs(numerical_derivative(f, 3.0, h=h) - 14.0) < abs(one_sided - 14.0) / 100


def test_numerical_derivative_accepts_functions_returning_values():
    """A function that builds Values can be differentiated numerically too (its .data is used)."""
    assert numerical_derivative(lambda x: Value(x).tanh(), 0.0) == pytest.approx(1.0, abs=1e-9)


def test_gradcheck_passes_for_correct_rules_and_names_inputs_after_parameters():
    """A correct function passes; rows are named after f's parameters and hold the true gradients."""
    report = gradcheck(lambda a, b, c: (a * b + c).tanh(), [2.0, -3.0, 6.8813735870195432])
    assert report
    assert [row.name for row in report.rows] == ["a", "b", "c"]
    n = 2.0 * -3.0 + 6.8813735870195432
    dtanh = 1 - math.tanh(n) ** 2
    for row, true in zip(report.rows, [-3.0 * dtanh, 2.0 * dtanh, dtanh]):
        assert isinstance(row, GradcheckRow) and row.ok
        assert row.analytic == pytest.approx(true, rel=1e-12)
        assert row.numeric == pytest.approx(true, rel=1e-6)
        assert row.abs_error == abs(row.analytic - row.numeric)


def test_gradcheck_catches_a_rule_that_forgets_the_upstream_gradient():
    """The lecture's tanh bug (local derivative not multiplied by out.grad) fails, naming the input and the gap."""
    def tanh(x):
        t = math.tanh(x.data)
        out = Value(t, (x,), "tanh")

        def _backward():
            x.grad += 1 - t ** 2          # the bug: forgets "* out.grad"
        out._backward = _backward
        return out

    report = gradcheck(lambda x, y: 3 * tanh(x) + y, [0.2, 1.0])      # tanh's upstream gradient is 3
    assert not report
    bad, good = report.rows
    assert (bad.name, bad.ok, good.ok) == ("x", False, True)
    assert bad.numeric == pytest.approx(3 * (1 - math.tanh(0.2) ** 2), rel=1e-6)
    assert bad.analytic == pytest.approx(1 - math.tanh(0.2) ** 2, rel=1e-12)
    assert report.failures == [bad]
    message = report.message
    assert message.startswith("gradcheck FAILED for x:") and "y:" not in message
    assert f"{bad.abs_error:.3g}" in message and f"{bad.numeric:.8g}" in message
    assert message in str(report)


def test_gradcheck_reports_kinks_honestly():
    """At relu's kink the one-sided rule (0) and the finite difference (0.5) disagree, and gradcheck says so."""
    report = gradcheck(lambda x: x.relu(), [0.0])
    assert not report
    assert report.rows[0].analytic == 0.0 and report.rows[0].numeric == pytest.approx(0.5)


def test_tolerances_are_respected():
    """An input passes exactly when |analytic - numeric| <= atol + rtol * |numeric|."""
    wrong = lambda x: Value(x.data * 2, (x,), "exp")  # noqa: E731  # rule says d/dx = out = 2x, truth is 2
    at_one = gradcheck(wrong, [1.0])                  # 2 vs 2: agrees by coincidence
    assert at_one
    off = gradcheck(wrong, [1.01])                    # 2.02 vs 2: off by 0.02
    assert not off
    assert gradcheck(wrong, [1.01], rtol=0.011)
    assert gradcheck(wrong, [1.01], rtol=0.0, atol=0.021)
    assert not gradcheck(wrong, [1.01], rtol=0.0, atol=0.019)


def test_report_table_is_aligned():
    """str(report) is a table with a header, one row per input, equal column edges, and a verdict line."""
    report = gradcheck(lambda a, b: a * b.exp() - a / b, [1.5, -0.25])
    lines = str(report).splitlines()
    assert lines[0].split() == ["input", "analytic", "numeric", "abs", "error", "ok"]
    assert [line.split()[0] for line in lines[1:3]] == ["a", "b"]
    assert len({len(line) for line in lines[:3]}) == 1
    assert lines[-1].startswith("gradcheck passed")
    assert repr(report) == "<GradcheckReport ok: 2 inputs>"


def test_star_args_and_labelled_values_name_the_rows():
    """Inputs of ``*args`` are named x[0], x[1]; labelled Values keep their label."""
    report = gradcheck(lambda *xs: xs[0] * xs[1], [2.0, 5.0])
    assert [row.name for row in report.rows] == ["x[0]", "x[1]"]
    report = gradcheck(lambda p, q: p * q, [Value(2.0, label="w1"), 5])
    assert [row.name for row in report.rows] == ["w1", "q"]
    assert [row.analytic for row in report.rows] == [5.0, 2.0]


def test_gradcheck_leaves_caller_values_untouched():
    """Values passed as inputs are read, not modified: their data and grad stay as they were."""
    w = Value(1.5)
    gradcheck(lambda x: x * x, [w])
    assert (w.data, w.grad) == (1.5, 0.0)


def test_bad_inputs_and_outputs_are_type_errors():
    """Non-number inputs, and functions that do not return a Value, are TypeErrors saying what was wrong."""
    with pytest.raises(TypeError, match="input 1 is str"):
        gradcheck(lambda a, b: a * b, [1.0, "2"])
    with pytest.raises(TypeError, match="return a Value, got float"):
        gradcheck(lambda a: 3.0, [1.0])


def test_empty_report_is_truthy():
    """A report with no inputs has nothing that disagrees."""
    assert GradcheckReport([], 1e-5, 1e-7)
