"""The lecture's neuron, built the way learners type it; shared by the tests that draw or explain it."""

from chainrule import Value


def neuron(w2_label: str = "w2") -> tuple[Value, dict[str, Value]]:
    """o = tanh(x1*w1 + x2*w2 + b), backward not run; returns o and its named nodes (leaves and n)."""
    x1 = Value(2.0, label="x1"); x2 = Value(0.0, label="x2")
    w1 = Value(-3.0, label="w1"); w2 = Value(1.0, label=w2_label)
    b = Value(6.8813735870195432, label="b")
    n = x1 * w1 + x2 * w2 + b; n.label = "n"
    o = n.tanh(); o.label = "o"
    return o, {"x1": x1, "x2": x2, "w1": w1, "w2": w2, "b": b, "n": n}
