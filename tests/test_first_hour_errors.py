"""A learner's first hour: every failure is one actionable line (issue 12, items 2-7 and 10-12)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from chainrule import MLP, Value, draw_dot, fit
from chainrule import experiment
from chainrule.cli import main
from chainrule.serialize import ModelFileError, load_model, save_model
from chainrule.train import DivergedError, History


def one_line_error(capsys, argv, *fragments):
    status = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert status == 1 and len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return captured


# --- item 2: an expression that starts with '-' -------------------------------------------------

@pytest.mark.parametrize("argv", [["graph", "-x*w", "--at", "x=1,w=2"], ["graph", "--at", "x=1,w=2", "-x*w"],
                                  ["graph", "--at=x=1,w=2", "-(x*w)"]])
def test_expression_starting_with_minus_is_accepted(capsys, argv):
    """`chainrule graph "-x*w" --at x=1,w=2` computes -x*w instead of printing usage."""
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "out    = -2.0000" in out and "x.grad = -2.0000" in out and "w.grad = -1.0000" in out


# --- item 3: errors name the op the user wrote, with its position ---------------------------------

def test_sqrt_errors_name_sqrt_and_its_position(capsys):
    """sqrt of a negative number names sqrt (as written, not pow) and where it is in the expression."""
    line = one_line_error(capsys, ["graph", "1 + sqrt(x)", "--at", "x=-1"], "sqrt at position 4").err
    assert "pow" not in line


def test_sqrt_at_zero_follows_pytorch(capsys):
    """sqrt at 0 is the engine's documented rule, PyTorch's: value 0, gradient inf (printed, no error)."""
    assert main(["graph", "1 + sqrt(x)", "--at", "x=0"]) == 0
    assert "x.grad =    inf" in capsys.readouterr().out


def test_a_failing_backward_step_names_the_op_as_written(monkeypatch):
    """A rule that raises during backward is traced to the op of the text and its position."""
    from chainrule.engine import PRIMITIVES
    from chainrule.expr import ExpressionError, build_expression

    def boom(m, g, out, a):
        raise ZeroDivisionError("tanh: cannot")
    monkeypatch.setattr(PRIMITIVES["tanh"], "backward", boom)
    with pytest.raises(ExpressionError) as caught:
        build_expression("x + tanh(x*2)", {"x": 1.0}, backward=True)
    assert caught.value.message == "tanh at position 4: tanh: cannot" and caught.value.position == 4


def test_forward_errors_name_the_op_as_written(capsys):
    """0 ** -1 names the '**' of the text and its position."""
    status = main(["graph", "x ** y", "--at", "x=0,y=-1"])
    err = capsys.readouterr().err
    assert status == 1 and "'**' at position 2" in err and err.count("\n") == 1


# --- item 4: no traceback for a missing optional package ------------------------------------------

def test_missing_scikit_learn_is_one_line(capsys, monkeypatch, tmp_path):
    """`train --dataset digits` without scikit-learn says what to install, with no traceback."""
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    one_line_error(capsys, ["train", "--dataset", "digits", "--steps", "1", "--out", str(tmp_path / "d")],
                   "scikit-learn")


def test_a_bug_is_still_one_line(capsys, monkeypatch):
    """Even an unexpected exception prints one line saying how to get the traceback."""
    import chainrule.cli as cli

    def broken(args):
        raise LookupError("oops")
    monkeypatch.setattr(cli, "_cmd_predict", broken)
    parser_argv = ["predict", "--model", "m.json", "1,2"]
    monkeypatch.setattr(cli, "build_parser", _parser_with(cli, "predict", broken))
    one_line_error(capsys, parser_argv, "unexpected LookupError: oops", "CHAINRULE_DEBUG=1")


def _parser_with(cli, command, func):
    real = cli.build_parser

    def build():
        parser = real()
        for action in parser._subparsers._group_actions:
            action.choices[command].set_defaults(func=func)
        return parser
    return build


# --- item 5: huge models are refused before they are built ----------------------------------------

def test_huge_model_is_refused_with_the_numbers(capsys, monkeypatch, tmp_path):
    """--hidden 1000,1000 is refused at once with the graph's size and the memory it would need."""
    monkeypatch.setattr(experiment, "_available_memory", lambda: 8 * 2**30)
    captured = one_line_error(capsys, ["train", "--hidden", "1000,1000", "--out", str(tmp_path / "big")],
                              "Values", "GiB", "8.0 GiB available", "--batch-size")
    assert "step 0" not in captured.out and not (tmp_path / "big").exists()


# --- item 6: the output folder is checked before training -----------------------------------------

def test_unwritable_out_fails_before_training(capsys, tmp_path):
    """--out in a place nothing can be written fails before the first step."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    captured = one_line_error(capsys, ["train", "--steps", "2", "--out", str(blocker / "run")], "cannot write there")
    assert "step 0" not in captured.out and "training" not in captured.out


def test_notebooks_says_which_folders_it_created(capsys, tmp_path):
    """`notebooks --dest a/b/c` says it created a/, a/b/ and a/b/c/."""
    dest = tmp_path / "a" / "b" / "c"
    assert main(["notebooks", "--dest", str(dest)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("created ") and str(tmp_path / "a") + os.sep in first and str(dest) + os.sep in first


# --- item 7: divergence stops with a clear message ----------------------------------------------

def test_fit_stops_when_the_loss_becomes_inf():
    """fit raises DivergedError naming the step and the fix; check_finite=False keeps going."""
    X, y = [[1.0, 2.0], [-1.0, 0.5], [0.3, -2.0]], [1, 0, 1]
    model = MLP(2, [8, 1], activation="relu", output_activation="linear")
    with pytest.raises(DivergedError, match=r"loss became (inf|nan) at step \d+ \(lr 1e\+30\): lower the learning rate"):
        fit(model, X, y, optimizer="sgd" and __import__("chainrule").SGD(model.parameters(), lr=1e30),
            steps=20, progress=False)
    assert all(abs(p.data) < float("inf") for p in model.parameters())
    model = MLP(2, [8, 1], activation="relu", output_activation="linear")
    history = fit(model, X, y, optimizer=__import__("chainrule").SGD(model.parameters(), lr=1e30), steps=20,
                  progress=False, check_finite=False)
    assert len(history) == 20


def test_train_with_a_huge_rate_stops_and_writes_nothing(capsys, tmp_path):
    """`train --lr 1e10` stops at the step where the loss became inf and saves no model."""
    out = tmp_path / "run"
    captured = one_line_error(capsys, ["train", "--lr", "1e10", "--steps", "20", "--hidden", "16", "--out", str(out)],
                              "loss became", "lower the learning rate", "--lr 1e+10")
    assert not out.exists()
    assert all(len(line) < 120 for line in captured.out.splitlines())


def test_huge_numbers_print_compactly():
    """A loss of 1e200 is 1.0000e+200 in the log line and the history, not 200 digits."""
    from chainrule.train import _log_line
    history = History(loss=[1e200], accuracy=[0.5], lr=[1.0])
    assert "loss 1.0000e+200 |" in _log_line(0, history)
    assert "1.0000e+200" in repr(history)


def test_graph_prints_huge_numbers_compactly(capsys):
    """`chainrule graph "exp(x)" --at x=700` prints 1.0142e+304, not a 305-digit number."""
    assert main(["graph", "exp(x)", "--at", "x=700"]) == 0
    assert "out    = 1.0142e+304" in capsys.readouterr().out


# --- item 10: interrupted runs leave nothing mixed; Ctrl-C while importing ----------------------

def test_interrupted_write_leaves_the_previous_run_untouched(capsys, tmp_path, monkeypatch):
    """Ctrl-C in the write phase of a --force rerun leaves the earlier run's files as they were, nothing half-written."""
    out = tmp_path / "run"
    assert main(["train", "--steps", "2", "--hidden", "4", "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    import chainrule.plot as plot

    def interrupted(fig, path, dpi=150):
        raise KeyboardInterrupt
    monkeypatch.setattr(plot, "save_figure", interrupted)
    assert main(["train", "--steps", "3", "--hidden", "4", "--seed", "7", "--out", str(out), "--force"]) == 130
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_interrupted_first_run_leaves_no_folder(capsys, tmp_path, monkeypatch):
    """An interrupted first run leaves no output folder at all (and no hidden staging folder)."""
    import chainrule.plot as plot
    monkeypatch.setattr(plot, "save_figure", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert main(["train", "--steps", "2", "--hidden", "4", "--out", str(tmp_path / "new" / "run")]) == 130
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_that_python_wrapped_in_another_error_is_still_an_interruption(capsys, tmp_path, monkeypatch):
    """A Ctrl-C that lands while a class is being created reaches us as RuntimeError("Error calling
    __set_name__ ...") caused by the KeyboardInterrupt: still one line and status 130, not a bug report."""
    import chainrule.plot as plot

    def wrapped(*args, **kwargs):
        try:
            raise KeyboardInterrupt()
        except KeyboardInterrupt as e:
            raise RuntimeError("Error calling __set_name__ on 'Field' instance 'loss' in 'History'") from e
    monkeypatch.setattr(plot, "save_figure", wrapped)
    assert main(["train", "--steps", "2", "--hidden", "4", "--out", str(tmp_path / "run")]) == 130
    assert capsys.readouterr().err.strip() == "error: interrupted"
    monkeypatch.setattr(plot, "save_figure", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("a bug")))
    assert main(["train", "--steps", "2", "--hidden", "4", "--out", str(tmp_path / "run2")]) == 1
    assert "unexpected RuntimeError: a bug" in capsys.readouterr().err


@pytest.mark.skipif(os.name != "posix", reason="SIGINT to a child process")
def test_ctrl_c_at_any_moment_of_startup_prints_no_traceback(tmp_path):
    """Ctrl-C while the command is still importing (numpy, the data, the model code) exits 130 with one line.

    The child is what the installed ``chainrule`` script runs; the clock starts once Python itself
    is up, since a Ctrl-C inside the interpreter's own startup, or in the few milliseconds of
    importing chainrule.cli itself, is before any code of ours can catch it."""
    for delay in (0.05, 0.1, 0.2, 0.3, 0.5):
        code = ("import sys; sys.stderr.write('up\\n'); sys.stderr.flush(); "
                "from chainrule.cli import main; sys.exit(main())")
        child = subprocess.Popen([sys.executable, "-c", code, "train", "--steps", "50",
                                  "--out", str(tmp_path / f"r{delay}")], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        assert child.stderr.readline() == "up\n"
        time.sleep(delay)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=120)
        assert "Traceback" not in err, (delay, err)
        assert child.returncode == 130 and err.strip() == "error: interrupted", (delay, child.returncode, err)


# --- item 11: untrusted text is escaped; one rule for overwriting --------------------------------

def test_model_file_text_cannot_drive_the_terminal(capsys, tmp_path):
    """Unknown keys with escape codes and newlines are printed escaped, on one line."""
    path = tmp_path / "model.json"
    model = json.loads(json.dumps({"format": "chainrule-mlp", "version": 1, "nin": 1, "nouts": [1],
                                   "activation": "linear", "output_activation": "linear", "parameters": [1.0, 0.0]}))
    model["\x1b[31mred\nerror: forged"] = 1
    path.write_text(json.dumps(model))
    captured = one_line_error(capsys, ["predict", "--model", str(path), "1"], "unknown field")
    assert "\x1b" not in captured.err and "\\x1b[31mred\\nerror: forged" in captured.err


@pytest.mark.parametrize("argv", [["train", "--steps", "1", "--hidden", "2"], ["demo", "--steps", "1"]])
def test_train_and_demo_refuse_to_overwrite_without_force(capsys, tmp_path, argv):
    """A second run into the same --out is refused, naming the files and --force; with --force it replaces them."""
    out = str(tmp_path / "run")
    assert main([*argv, "--out", out]) == 0
    capsys.readouterr()
    one_line_error(capsys, [*argv, "--out", out], "already has model.json", "--force")
    assert main([*argv, "--out", out, "--force"]) == 0


def test_graph_refuses_to_overwrite_without_force(capsys, tmp_path):
    """graph --out an existing file is refused before computing; --force overwrites it."""
    target = tmp_path / "g.dot"
    target.write_text("mine")
    one_line_error(capsys, ["graph", "x*2", "--at", "x=1", "--out", str(target)], "g.dot already exists", "--force")
    assert target.read_text() == "mine"
    assert main(["graph", "x*2", "--at", "x=1", "--out", str(target), "--force"]) == 0
    assert target.read_text().startswith("digraph")


# --- item 12: other unclear errors --------------------------------------------------------------

def test_model_file_with_giant_widths_is_a_model_file_error(tmp_path):
    """4,000-digit widths (and 5,000-digit ones Python cannot even read) are ModelFileError, short."""
    for digits in (4000, 5000):
        path = tmp_path / f"w{digits}.json"
        path.write_text('{"format": "chainrule-mlp", "version": 1, "nin": 2, "nouts": [' + "9" * digits + ', 1], '
                        '"activation": "relu", "output_activation": "linear", "parameters": []}')
        with pytest.raises(ModelFileError) as caught:
            load_model(path)
        assert len(str(caught.value)) < 300 and "digits" in str(caught.value)


def test_hidden_with_a_superscript_digit_is_a_config_error(capsys, tmp_path):
    """--hidden ² says what --hidden takes, not Python's int() message."""
    captured = one_line_error(capsys, ["train", "--hidden", "²", "--out", str(tmp_path / "r")],
                              "--hidden must be comma-separated positive whole numbers")
    assert "invalid literal" not in captured.err


def test_save_model_with_a_long_name_works_or_names_the_real_file(tmp_path):
    """The longest name the folder allows saves fine; a too-long one fails naming that file, not a hidden one."""
    model = MLP(2, [2, 1])
    long_ok = tmp_path / ("m" * 250 + ".json")
    assert save_model(model, long_ok).exists()
    too_long = tmp_path / ("m" * 300 + ".json")
    with pytest.raises(OSError) as caught:
        save_model(model, too_long)
    assert "m" * 300 in str(caught.value) and ".chainrule-" not in str(caught.value)
    assert [p.name for p in tmp_path.iterdir()] == [long_ok.name]


def test_lone_surrogate_label_saves(tmp_path):
    """A label holding a lone surrogate draws and saves (shown as U+FFFD) instead of UnicodeEncodeError."""
    x = Value(1.0, label="x\ud800")
    path = draw_dot(x * 2).save(tmp_path / "g.dot")
    assert "x\ufffd" in path.read_text(encoding="utf-8")


def test_graph_png_without_graphviz_fails_before_computing(capsys, tmp_path, monkeypatch):
    """--out x.png with no system Graphviz is refused before anything is computed or printed."""
    from chainrule import render
    monkeypatch.setattr(render, "_system_dot", lambda: None)
    captured = one_line_error(capsys, ["graph", "x*2", "--at", "x=1", "--out", str(tmp_path / "x.png")],
                              "install Graphviz", "FILE.dot")
    assert captured.out == "" and not (tmp_path / "x.png").exists()


@pytest.mark.skipif(os.name != "posix", reason="FIFOs and /dev/zero are POSIX")
@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "folder"])
def test_model_file_that_is_not_a_regular_file_is_refused(tmp_path, kind):
    """A FIFO, /dev/zero or a folder as the model file is refused at once instead of hanging."""
    if kind == "fifo":
        path = tmp_path / "model.json"
        os.mkfifo(path)
    elif kind == "dev-zero":
        path = "/dev/zero"
    else:
        path = tmp_path
    with pytest.raises(ModelFileError, match="not a regular file"):
        load_model(path)


def test_export_refuses_to_overwrite_without_force(capsys, tmp_path):
    """export --to an existing file is refused (naming it and --force); with --force it is replaced."""
    pytest.importorskip("torch")
    model_path = save_model(MLP(2, [2, 1]), tmp_path / "model.json")
    target = tmp_path / "model.pt"
    target.write_bytes(b"mine")
    one_line_error(capsys, ["export", "--model", str(model_path), "--to", str(target)], "model.pt already exists",
                   "--force")
    assert target.read_bytes() == b"mine"
    assert main(["export", "--model", str(model_path), "--to", str(target), "--force"]) == 0
    assert target.read_bytes() != b"mine"
