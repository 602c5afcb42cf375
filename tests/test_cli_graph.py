"""The ``chainrule graph`` command, and the command line's shared behaviour (help, one-line errors,
CHAINRULE_DEBUG)."""

import argparse
import subprocess
import sys

import pytest

from chainrule import cli
from chainrule.cli import CLIError, main

torch = pytest.importorskip("torch")

NEURON = "tanh(x1*w1 + x2*w2 + b)"
AT = "x1=2,x2=0,w1=-3,w2=1,b=6.8813735870195432"


def _torch_neuron():
    t = {k: torch.tensor(float(v), dtype=torch.float64, requires_grad=True)
         for k, v in (pair.split("=") for pair in AT.split(","))}
    out = torch.tanh(t["x1"] * t["w1"] + t["x2"] * t["w2"] + t["b"])
    out.backward()
    return out.item(), {k: v.grad.item() for k, v in t.items()}


def _printed(stdout):
    """``{'out': '0.7071', 'x1.grad': '-1.5000', ...}`` from the command's aligned lines."""
    rows = {}
    for line in stdout.splitlines():
        if " = " in line:
            name, number = line.split(" = ")
            rows[name.strip()] = number.strip()
    return rows


def _one_line_error(capsys, argv, *fragments):
    assert main(argv) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


# --- The graph command ----------------------------------------------------------------------------

def test_neuron_prints_gradients_matching_torch(capsys, tmp_path):
    """The lecture's neuron prints its output and each input's gradient as PyTorch computes them, aligned."""
    out = tmp_path / "neuron.svg"
    assert main(["graph", NEURON, "--at", AT, "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    value, grads = _torch_neuron()
    rows = _printed(stdout)
    assert rows["out"] == f"{value:.4f}"
    assert {name: rows[f"{name}.grad"] for name in grads} == {name: f"{g:.4f}" for name, g in grads.items()}
    lines = [line for line in stdout.splitlines() if " = " in line]
    assert [line.split(" = ")[0].strip() for line in lines] == ["out", "x1.grad", "w1.grad", "x2.grad",
                                                                 "w2.grad", "b.grad"]
    assert len({line.index("=") for line in lines}) == 1          # the '=' signs line up
    assert len({len(line) for line in lines}) == 1                # and so do the numbers' last digits
    assert f"wrote {out}" in stdout


def test_svg_drawing_is_written(capsys, tmp_path):
    """--out FILE.svg writes an SVG picture that shows the inputs and their gradients."""
    out = tmp_path / "neuron.svg"
    assert main(["graph", NEURON, "--at", AT, "--out", str(out)]) == 0
    svg = out.read_text(encoding="utf-8").replace("&#45;", "-")     # Graphviz writes '-' as an entity
    assert "<svg" in svg and "x1*w1" in svg and "grad -1.5000" in svg


def test_dot_output_and_rankdir(capsys, tmp_path):
    """--out FILE.dot writes the DOT text, labelled by sub-expression, flowing as --rankdir says."""
    out = tmp_path / "neuron.dot"
    assert main(["graph", NEURON, "--at", AT, "--out", str(out), "--rankdir", "TB"]) == 0
    source = out.read_text(encoding="utf-8")
    assert source.startswith("digraph") and "rankdir=TB" in source
    assert "{ x1*w1 | data -6.0000 | grad 0.5000 }" in source
    assert "{ out | data 0.7071 | grad 1.0000 }" in source


def test_step_writes_html_and_gradients_are_not_doubled(capsys, tmp_path):
    """--step writes the step-through page and prints the same gradients as a plain run (backward ran once)."""
    page = tmp_path / "steps.html"
    assert main(["graph", NEURON, "--at", AT, "--out", str(page), "--step"]) == 0
    stepped = _printed(capsys.readouterr().out)
    assert main(["graph", NEURON, "--at", AT]) == 0
    plain = _printed(capsys.readouterr().out)
    assert stepped == plain
    html = page.read_text(encoding="utf-8")
    # One frame per node backward visits: 10 Values in the neuron's graph.
    assert html.startswith("<!DOCTYPE html>") and html.count('class="crs-frame') == 10


def test_without_out_only_numbers(capsys, tmp_path, monkeypatch):
    """Without --out the command prints the numbers and writes no file."""
    monkeypatch.chdir(tmp_path)
    assert main(["graph", "x*x + 3*x", "--at", "x=2"]) == 0
    assert _printed(capsys.readouterr().out) == {"out": "10.0000", "x.grad": "7.0000"}
    assert list(tmp_path.iterdir()) == []


def test_constant_expression_needs_no_at(capsys):
    """An expression without names runs without --at and prints just its value."""
    assert main(["graph", "2**-1 + 1"]) == 0
    assert _printed(capsys.readouterr().out) == {"out": "1.5000"}


def test_repeated_at_and_negative_numbers(capsys):
    """--at may be repeated and takes negative and exponent numbers."""
    assert main(["graph", "a*b", "--at", "a=-2.5", "--at", "b=4e-1"]) == 0
    assert _printed(capsys.readouterr().out) == {"out": "-1.0000", "a.grad": "0.4000", "b.grad": "-2.5000"}


@pytest.mark.parametrize("expression, fragments", [
    ("tanh(x))", ["unexpected ')' at position 7", "'tanh(x))'"]),
    ("x +", ["position 3", "unexpected end"]),
    ("sin(x)", ["unknown function 'sin'", "tanh"]),
    ("x y", ["position 2", "write * to multiply"]),
    ("(x", ["never closed", "position 0"]),
    ("log(x - 1)", ["log", "position 0"]),
    ("x / (x - 1)", ["division by zero", "position 2"]),
    ("(" * 5000 + "x", ["never closed", "position 4999"]),
])
def test_bad_expression_is_one_line_with_position(capsys, expression, fragments):
    """A bad expression (or a math error while building it) is one 'error:' line naming the position."""
    line = _one_line_error(capsys, ["graph", expression, "--at", "x=1"], *fragments)
    assert len(line) < 300


@pytest.mark.parametrize("at, fragment", [
    ("x", "'x' is not NAME=NUMBER"),
    ("x=abc", "is not a number"),
    ("1x=2", "is not NAME=NUMBER"),
    ("x=1,x=2", "x is given twice"),
    ("x=nan", "not a finite number"),
    ("x=1,,y=2", "'' is not NAME=NUMBER"),
    ("x=1,y=2,z=3", "--at gives z, which the expression does not use"),
    ("y=1", "no value for 'x'"),
])
def test_bad_at_is_one_line(capsys, at, fragment):
    """--at is parsed strictly: malformed, duplicate, non-finite, unused or missing names are one-line errors."""
    _one_line_error(capsys, ["graph", "x + y" if "y" in at else "x", "--at", at], fragment)


@pytest.mark.parametrize("argv, fragment", [
    (["--out", "g.svg", "--step"], "--step writes an HTML page"),
    (["--out", "g.html"], "add --step"),
    (["--out", "g.txt"], ".svg, .png, .dot, .gv"),
    (["--step"], "--step writes an HTML page"),
    (["--out", "missing-folder/g.svg"], "does not exist"),
])
def test_bad_out_is_one_line(capsys, tmp_path, monkeypatch, argv, fragment):
    """A wrong --out/--step combination or a missing folder fails before anything is computed or written."""
    monkeypatch.chdir(tmp_path)
    _one_line_error(capsys, ["graph", "x", "--at", "x=1", *argv], fragment)
    assert list(tmp_path.iterdir()) == []


def test_renderer_failure_is_one_line(capsys, tmp_path, monkeypatch):
    """When no renderer can draw, the command says so in one line and points to .dot output."""
    import chainrule.viz
    from chainrule.render import RendererUnavailable

    def unavailable(source, fmt="svg", **kwargs):
        raise RendererUnavailable("no graph renderer is installed")
    monkeypatch.setattr(chainrule.viz, "render", unavailable)
    assert main(["graph", "x*2", "--at", "x=1", "--out", str(tmp_path / "g.svg")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no graph renderer" in err and "FILE.dot" in err


def test_python_dash_m_runs_graph(tmp_path):
    """`python -m chainrule graph ...` works as a real process: exit 0, numbers printed, file written."""
    done = subprocess.run([sys.executable, "-m", "chainrule", "graph", NEURON, "--at", AT, "--out", "n.dot"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "x1.grad = -1.5000" in done.stdout and (tmp_path / "n.dot").read_text().startswith("digraph")


# --- Shared command-line behaviour ------------------------------------------------------------------

def _subparsers():
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, action.choices


def test_every_subcommand_documents_every_option():
    """Each subcommand's --help has a description and a help text for every argument it takes."""
    _, commands = _subparsers()
    assert "graph" in commands
    for name, sub in commands.items():
        assert sub.description, f"{name} has no description"
        text = sub.format_help()
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"chainrule {name}: {action.option_strings or action.dest} has no help"
            for option in action.option_strings:
                assert option in text


def test_top_level_help_mentions_debug_switch():
    """`chainrule --help` tells how to get a traceback (CHAINRULE_DEBUG=1)."""
    parser, _ = _subparsers()
    assert "CHAINRULE_DEBUG=1" in parser.format_help()
    assert "CHAINRULE_DEBUG=1" in cli.__doc__


def test_debug_env_var_reraises(monkeypatch):
    """With CHAINRULE_DEBUG=1 the original exception propagates instead of the one-line error."""
    monkeypatch.setenv("CHAINRULE_DEBUG", "1")
    with pytest.raises(CLIError, match="position 7"):
        main(["graph", "tanh(x))", "--at", "x=1"])


def test_debug_env_var_off_values(monkeypatch, capsys):
    """CHAINRULE_DEBUG=0 (or empty) keeps the one-line error."""
    for off in ("0", ""):
        monkeypatch.setenv("CHAINRULE_DEBUG", off)
        _one_line_error(capsys, ["graph", "tanh(x))", "--at", "x=1"], "position 7")


def test_broken_pipe_exits_quietly(monkeypatch, capsys):
    """A reader that goes away (`| head`) ends the command with status 141 and no error text."""
    def broken(args):
        raise BrokenPipeError(32, "Broken pipe")
    monkeypatch.setattr(cli, "_cmd_graph", broken)
    assert main(["graph", "x", "--at", "x=1"]) == 141
    assert capsys.readouterr().err == ""
