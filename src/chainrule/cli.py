"""The ``chainrule`` command: a thin shell over the library (parse, call, print).

Every subcommand is one ``_cmd_*`` function taking the parsed arguments. A user's mistake raises
``CLIError`` (or a ValueError/TypeError/OSError from the library) and prints as one line,
``error: ...``, with exit status 1; no traceback. ``main(argv)`` is testable without a subprocess.

Set the environment variable ``CHAINRULE_DEBUG=1`` to get the full traceback instead of the
one-line error (for bug reports, or to see where a library error came from).
"""

from __future__ import annotations

import os
import sys

# argparse, like everything else, is imported inside the functions: until main() runs, nothing can
# catch a Ctrl-C, so importing this module must take next to no time.

__all__ = ["CLIError", "main"]


class CLIError(Exception):
    """A mistake in what the user asked for; printed as one line."""


# SUBCOMMANDS: each helper function below adds one subparser and sets ``func``.


def _add_notebooks(sub) -> None:
    p = sub.add_parser(
        "notebooks",
        help="copy the tutorial notebooks into a folder, ready for Jupyter",
        description="Copy chainrule's five tutorial notebooks (derivatives, Value and backprop, "
                    "training an MLP, going fast, graduating to PyTorch) into DIR and print the command "
                    "that opens them.",
    )
    p.add_argument("--dest", default="chainrule-notebooks", metavar="DIR",
                   help="folder to copy them into (default: ./chainrule-notebooks)")
    _add_force(p, "notebooks already in DIR")
    p.set_defaults(func=_cmd_notebooks)


def _cmd_notebooks(args) -> int:
    import shlex
    from importlib.resources import files
    from pathlib import Path

    # importlib.resources finds the notebooks wherever the package lives (site-packages, a
    # zipped install, an editable checkout), so a PyPI user gets the same files as a developer.
    packaged = sorted((entry for entry in (files("chainrule") / "notebooks").iterdir()
                       if entry.name.endswith(".ipynb")), key=lambda entry: entry.name)
    if not packaged:
        raise CLIError("the installed chainrule package has no notebooks in it; reinstall it "
                       "with: pip install --force-reinstall chainrule")
    dest = Path(args.dest)
    if dest.exists() and not dest.is_dir():
        raise CLIError(f"{dest} exists and is not a folder; choose another --dest")
    # A learner's notebook holds their own edits and outputs: never overwrite it silently.
    _refuse_overwrite([dest / entry.name for entry in packaged], args.force, str(dest), "--dest")
    created = _missing_folders(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if created:
        from .text import printable
        print(f"created {', '.join(printable(folder) + os.sep for folder in created)}")
    for entry in packaged:
        (dest / entry.name).write_bytes(entry.read_bytes())
        print(f"copied {dest / entry.name}")
    print(f"open them with:  jupyter lab {shlex.quote(str(dest))}")
    print("(no Jupyter yet? pip install jupyterlab)")
    return 0


def _missing_folders(path) -> list[str]:
    """The folders that creating ``path`` (with its parents) would make, outermost first."""
    from pathlib import Path

    missing = []
    path = Path(path)
    while not path.exists() and path != path.parent:
        missing.append(str(path))
        path = path.parent
    return missing[::-1]


def _add_graph(sub) -> None:
    import argparse

    p = sub.add_parser(
        "graph",
        help="build an expression, run backward, draw the graph and print the gradients",
        description="Build EXPRESSION from a small safe grammar (numbers, names, + - * / **,\n"
                    "parentheses, exp log tanh sigmoid relu sqrt abs; parsed, never eval'd), run\n"
                    "backward, print the output's value and each input's gradient, and draw it.",
        epilog="example:\n"
               '  chainrule graph "tanh(x1*w1 + x2*w2 + b)" \\\n'
               "      --at x1=2,x2=0,w1=-3,w2=1,b=6.8813735870195432 --out neuron.svg",
        # Keep the line breaks above: the example must stay copyable.
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("expression", metavar="EXPRESSION",
                   help='the expression, quoted for the shell, e.g. "tanh(x*w + b)"')
    p.add_argument("--at", action="append", default=[], metavar="NAME=NUMBER,...",
                   help="the value of every name in EXPRESSION, e.g. --at x=2,w=-3,b=0.5 "
                        "(may be repeated)")
    p.add_argument("--out", metavar="FILE",
                   help="write the drawing: .svg, .png (needs system Graphviz), .dot/.gv (the DOT "
                        "text), or .html with --step; without --out only the numbers are printed")
    p.add_argument("--step", action="store_true",
                   help="write the step-through view of backward (one frame per node) as a "
                        "standalone HTML page to --out FILE.html")
    p.add_argument("--rankdir", default="LR", choices=["LR", "TB", "RL", "BT"],
                   help="direction the drawing flows: LR left to right (default), TB top to bottom")
    _add_force(p, "the --out file")
    p.set_defaults(func=_cmd_graph)


# One rule for every command that writes: nothing that already exists is overwritten unless
# --force is given, and the error says which files and how to go on.
def _add_force(p, what: str) -> None:
    p.add_argument("--force", action="store_true",
                   help=f"overwrite {what} (without it, nothing that exists is overwritten)")


def _refuse_overwrite(paths, force: bool, where: str = "", option: str = "--out") -> None:
    from .text import printable

    existing = [path for path in paths if os.path.lexists(path)]
    if existing and not force:
        names = ", ".join(printable(os.path.basename(path)) for path in existing)
        raise CLIError(f"{printable(where) + ' already has ' if where else ''}{names}"
                       f"{'' if where else ' already exists'}; pass --force to overwrite, or choose "
                       f"another {option}")


_GRAPH_FORMATS = (".svg", ".png", ".dot", ".gv")


def _parse_at(items: list[str]) -> dict[str, float]:
    """``["x=2,w=-3", "b=1"]`` -> ``{"x": 2.0, "w": -3.0, "b": 1.0}``, strictly."""
    import math
    import re

    values: dict[str, float] = {}
    for item in items:
        for pair in item.split(","):
            name, sep, number = (part.strip() for part in pair.partition("="))
            if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise CLIError(f"--at: {pair.strip()!r} is not NAME=NUMBER (e.g. --at x=2,w=-3)")
            try:
                value = float(number)
            except ValueError:
                raise CLIError(f"--at: {name}={number!r} is not a number") from None
            if not math.isfinite(value):
                raise CLIError(f"--at: {name}={number} is not a finite number")
            if name in values:
                raise CLIError(f"--at: {name} is given twice")
            values[name] = value
    return values


def _cmd_graph(args) -> int:
    from pathlib import Path

    from .expr import ExpressionError, build_expression
    from .render import RenderError

    out = Path(args.out) if args.out else None
    suffix = out.suffix.lower() if out else ""
    # Check the output name before computing anything, so a typo costs nothing.
    if args.step and suffix not in (".html", ".htm"):
        raise CLIError("--step writes an HTML page: give --out FILE.html")
    if out and not args.step and suffix not in _GRAPH_FORMATS:
        hint = " (the .html page is the step-through view: add --step)" if suffix in (".html", ".htm") else ""
        raise CLIError(f"--out {out.name}: the drawing is saved as {', '.join(_GRAPH_FORMATS)}{hint}")
    if out and not out.parent.is_dir():
        raise CLIError(f"--out {out}: the folder {out.parent} does not exist")
    if out:
        _refuse_overwrite([out], args.force)
    if out and suffix in (".svg", ".png") and not args.step:
        # Before computing anything: can this machine draw that format at all?
        from .render import check_format
        try:
            check_format(suffix[1:])
        except RenderError as exc:
            raise CLIError(f"cannot write {out.name}: {exc} (--out FILE.dot writes the DOT text "
                           "without rendering)") from None
    values = _parse_at(args.at)
    try:
        root, leaves = build_expression(args.expression, values, backward=True)
    except ExpressionError as exc:
        shown = f"in {args.expression!r}: " if len(args.expression) <= 60 else ""
        hint = " (give values with --at NAME=NUMBER)" if exc.message.startswith("no value") else ""
        raise CLIError(f"{shown}{exc.message}{hint}") from exc
    unused = [name for name in values if name not in leaves]
    if unused:
        raise CLIError(f"--at gives {', '.join(unused)}, which the expression does not use")

    drawing = None
    if args.step:
        from .walkthrough import step_through
        drawing = step_through(root, rankdir=args.rankdir)     # leaves every .grad as it is
    elif out:
        from .viz import draw_dot
        drawing = draw_dot(root, rankdir=args.rankdir)

    from .text import number
    rows = [("out", root.data)] + [(f"{name}.grad", leaf.grad) for name, leaf in leaves.items()]
    name_width = max(len(name) for name, _ in rows)
    numbers = [number(value) for _, value in rows]
    number_width = max(len(text) for text in numbers)
    for (name, _), text in zip(rows, numbers):
        print(f"{name:<{name_width}} = {text:>{number_width}}")

    if drawing is not None:
        try:
            drawing.save(out)
        except RenderError as exc:
            raise CLIError(f"could not draw {out}: {exc} (--out FILE.dot writes the DOT text "
                           "without rendering)") from exc
        print(f"wrote {out}")
    return 0


# --- demo, train, predict: training networks from the shell ----------------------------------------
# The settings, their checks and the training run live in chainrule.experiment; these commands only
# turn flags into its configuration keys (``--batch-size`` is ``batch_size``) and call it.


def _add_config_flags(p, config) -> None:
    import argparse

    from .experiment import flag

    # Every value arrives as text and is checked by resolve_config, so that a mistake reads
    # ``error: --steps must be ...`` like every other error. SUPPRESS keeps unset flags out of the
    # namespace, which is how the command knows what was given explicitly.
    for key, (default, help_text) in config.items():
        shown = f" (default: {default})" if default not in (None, False, "") else ""
        if key == "compiled":
            p.add_argument(flag(key), action="store_true", default=argparse.SUPPRESS, help=help_text)
        else:
            p.add_argument(flag(key), metavar=key.split("_")[-1].upper(), default=argparse.SUPPRESS,
                           help=help_text + shown)


def _add_demo(sub) -> None:
    import argparse

    from .experiment import CONFIG

    p = sub.add_parser(
        "demo",
        help="train micrograd's demo network on two moons and draw its decision boundary",
        description="The main job: train MLP(2, [16, 16, 1]) (relu, linear output) on 100 two-moons\n"
                    "points with hinge loss, L2 1e-4 and SGD at a rate falling from 1.0 to 0.1, print\n"
                    "the progress and the final loss and accuracy, and write decision_boundary.png,\n"
                    "loss_curve.png, model.json, config.json and history.json into --out.",
        epilog="example:\n  chainrule demo --out runs/demo\n"
               "  chainrule demo --compiled      # the same training, replayed with numpy: about 1 s",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="runs/demo", metavar="DIR", help="output folder (default: runs/demo)")
    _add_config_flags(p, {key: CONFIG[key] for key in ("seed", "steps", "compiled")})
    _add_force(p, "the files of an earlier run in --out")
    p.set_defaults(func=_cmd_run)


def _add_train(sub) -> None:
    import argparse

    from .experiment import CONFIG, defaults_table

    p = sub.add_parser(
        "train",
        help="train an MLP on a toy dataset, every setting a flag",
        description="Train an MLP on a toy dataset and write model.json, config.json (the resolved\n"
                    "settings), history.json and the pictures into --out. Every setting has a default\n"
                    "(micrograd's demo), and each dataset its own that train it well (listed below);\n"
                    "an unknown name is an error listing the valid ones.",
        epilog=defaults_table() + "\n\nexample:\n"
               "  chainrule train --dataset spirals --n-samples 200 --optimizer adam --lr 0.03 \\\n"
               "      --steps 300 --test-size 0.25 --compiled --out runs/spirals",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_config_flags(p, CONFIG)
    _add_force(p, "the files of an earlier run in --out")
    p.set_defaults(func=_cmd_run)


def _cmd_run(args) -> int:
    """``demo`` and ``train``: the settings given as flags, over the defaults, run as one experiment."""
    from .experiment import CONFIG, resolve_config, run

    run(resolve_config({key: getattr(args, key) for key in CONFIG if hasattr(args, key)}), overwrite=args.force)
    return 0


# Settings of ``chainrule live``: train's, less those that only make sense for a run that ends
# (the output folder, the schedule over a fixed number of steps, the choice of replay: live always
# replays the compiled loss).
_LIVE_SKIPS = ("out", "schedule", "compiled", "steps")


def _add_live(sub) -> None:
    import argparse

    from .experiment import CONFIG

    p = sub.add_parser(
        "live",
        help="watch a network learn, live, in the browser: boundary, curves, weights, one point's graph",
        description="Train an MLP on a toy dataset in Python and watch it learn in the browser: the\n"
                    "decision boundary, the loss and accuracy, the weights, and the computational graph of\n"
                    "one point's loss with data and grad in every box, including backward step by step.\n"
                    "The page is served on 127.0.0.1 with a random token in its URL. Ctrl-C stops it.",
        epilog="example:\n"
               "  chainrule live --dataset moons --hidden 8,8 --activation tanh --optimizer adam --lr 0.03",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_config_flags(p, {key: value for key, value in CONFIG.items() if key not in _LIVE_SKIPS})
    p.add_argument("--steps", type=int, default=None, metavar="N",
                   help="pause after N steps (default: train until paused from the page)")
    p.add_argument("--speed", type=int, default=30, metavar="N", help="training steps per second (default: 30)")
    p.add_argument("--port", type=int, default=0, metavar="N", help="port on 127.0.0.1 (default: any free one)")
    p.add_argument("--no-browser", action="store_true", help="print the URL without opening a browser")
    p.add_argument("--paused", action="store_true", help="start paused (press play in the page)")
    p.set_defaults(func=_cmd_live)


def _cmd_live(args) -> int:
    import threading

    from .experiment import CONFIG, flag, prepare, resolve_config
    from .liveview import LiveServer, Trainer

    config = resolve_config({key: getattr(args, key) for key in CONFIG if hasattr(args, key)
                             and key not in _LIVE_SKIPS})
    if args.steps is not None and args.steps < 1:
        raise CLIError(f"--steps must be >= 1, got {args.steps}")
    if config["dataset"] == "digits":
        raise CLIError(f"{flag('dataset')} digits has 64 inputs; live draws the plane, so choose a dataset "
                       "with 2 (moons, circles, blobs, spirals, xor)")
    setup = prepare(config)
    if setup.X.shape[1] != 2:
        raise CLIError(f"{flag('dataset')} {config['dataset']} has {setup.X.shape[1]} inputs; live draws the plane, "
                       "so choose a dataset with 2 (moons, circles, blobs, spirals, xor)")
    try:
        trainer = Trainer(setup.model, setup.X, setup.y, X_test=setup.X_test, y_test=setup.y_test,
                          loss=config["loss"], optimizer=config["optimizer"], lr=config["lr"], l2=config["l2"],
                          batch_size=config["batch_size"], speed=args.speed, seed=config["seed"],
                          max_steps=args.steps, running=not args.paused)
    except ValueError as exc:       # LiveError among them: a bound of the live view
        raise CLIError(str(exc)) from None
    server = LiveServer(trainer, port=args.port)
    stopped = threading.Event()
    server.start()
    try:
        print(f"training {setup.model!r} on {config['dataset']}, live")
        print(f"open {server.url}")
        print("(the token in the URL is the key: share it with no one; Ctrl-C stops)", flush=True)
        if not args.no_browser:
            import webbrowser
            webbrowser.open(server.url)
        while not stopped.wait(0.5):       # short waits, so Ctrl-C is seen at once
            if not trainer.alive:
                raise CLIError("the training thread stopped unexpectedly")
    except KeyboardInterrupt:
        print("stopping", flush=True)
    finally:
        server.close()
    print(f"stopped after {trainer.step} steps")
    return 0


def _add_predict(sub) -> None:
    import argparse

    p = sub.add_parser(
        "predict",
        help="print a saved model's output for some points",
        description="Load a model written by 'chainrule train' or 'chainrule demo' and print its output\n"
                    "for each POINT. One output is a score (class 1 when > 0); several outputs are one\n"
                    "score per class (the largest wins).",
        epilog="example:\n  chainrule predict --model runs/demo/model.json 0.5,-0.2 -1,0.3",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, metavar="FILE", help="the model file (model.json)")
    p.add_argument("points", nargs="+", metavar="POINT", help="comma-separated numbers, one per model input")
    # argparse reads "-0.5,0.2" as an unknown option, since only plain numbers like "-0.5" count as
    # negative numbers; widen that rule (where this argparse has it) so such points just work.
    import re
    if hasattr(p, "_negative_number_matcher"):
        p._negative_number_matcher = re.compile(r"^-\d*\.?\d+([eE][-+]?\d+)?(,[-+0-9.eE]*)*$")
    p.set_defaults(func=_cmd_predict)


def _cmd_predict(args) -> int:
    import math

    from .serialize import load_model
    from .train import predict

    model = load_model(args.model)
    points = []
    for i, text in enumerate(args.points, 1):
        try:
            point = [float(part) for part in text.split(",")]
        except ValueError:
            raise CLIError(f"point {i} ({text!r}) is not comma-separated numbers like 0.5,-0.2") from None
        if not all(math.isfinite(v) for v in point):
            raise CLIError(f"point {i} ({text!r}) has a number that is not finite")
        if len(point) != model.nin:
            raise CLIError(f"point {i} ({text!r}) has {len(point)} number{'s' * (len(point) != 1)}, "
                           f"but the model takes {model.nin} inputs")
        points.append(point)
    scores = predict(model, points)
    for text, score in zip(args.points, scores):
        if scores.ndim == 1:
            print(f"{text}  score {score:.4f}  class {int(score > 0)}")
        else:
            shown = ", ".join(f"{s:.4f}" for s in score)
            print(f"{text}  scores [{shown}]  class {int(score.argmax())}")
    return 0


def _add_export(sub) -> None:
    import argparse

    p = sub.add_parser(
        "export",
        help="write a saved model as a PyTorch state dict and print the code that loads it",
        description="Graduate to PyTorch: turn a model written by 'chainrule train' or 'chainrule demo'\n"
                    "into a torch.nn.Sequential's state dict (float64 tensors only, so it loads with\n"
                    "torch.load(..., weights_only=True)) and print the two lines of PyTorch that load it.\n"
                    'Needs PyTorch: pip install "chainrule[torch]".',
        epilog="example:\n  chainrule export --model runs/demo/model.json --to model.pt",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, metavar="FILE", help="the model file (model.json)")
    p.add_argument("--to", required=True, metavar="FILE.pt", help="where to write the state dict (.pt or .pth)")
    _add_force(p, "the --to file")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args) -> int:
    from pathlib import Path

    from .bridge import sequential_code, to_torch
    from .serialize import load_model, write_atomically

    out = Path(args.to)
    # Check the output name before loading anything, so a typo costs nothing.
    if out.suffix.lower() not in (".pt", ".pth"):
        raise CLIError(f"--to {out.name}: a PyTorch state dict is saved as FILE.pt (or .pth)")
    if out.is_dir():
        raise CLIError(f"--to {out}: it is a folder; give a file name such as {out / 'model.pt'}")
    if not out.parent.is_dir():
        raise CLIError(f"--to {out}: the folder {out.parent} does not exist")
    _refuse_overwrite([out], args.force, option="--to")
    model = load_model(args.model)
    try:
        net = to_torch(model)          # imports torch, or says how to install it
    except ImportError as exc:
        raise CLIError(str(exc)) from None
    import torch
    # Plain tensors under their state-dict names: nothing in the file runs code when it is loaded.
    state = {name: tensor.detach() for name, tensor in net.state_dict().items()}
    write_atomically(out, lambda tmp: torch.save(state, tmp))
    print(f"wrote {out}: {model!r} as a PyTorch state dict of {len(state)} float64 tensors")
    print("load it in PyTorch (after import torch) with:")
    print(f"model = {sequential_code(model)}")
    print(f"model.load_state_dict(torch.load({str(out)!r}, weights_only=True))")
    return 0


def build_parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(
        prog="chainrule",
        description="Backpropagation you can read, watch, check and run fast.",
        epilog="Run 'chainrule COMMAND --help' for a command's options. Errors print as one line; "
               "set CHAINRULE_DEBUG=1 in the environment to see the full traceback instead.",
    )
    parser.add_argument("--version", action="version", version=f"chainrule {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    # REGISTER: one line per subcommand.
    _add_demo(sub)
    _add_train(sub)
    _add_live(sub)
    _add_predict(sub)
    _add_graph(sub)
    _add_export(sub)
    _add_notebooks(sub)
    return parser


def _version() -> str:
    from . import __version__
    return __version__


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 on success, 1 on an error, 130 on Ctrl-C).

    Nothing prints a traceback unless ``CHAINRULE_DEBUG=1``: a user's mistake, a missing optional
    package, a bad path and an interrupted run are each one line on stderr.
    """
    try:
        return _main(sys.argv[1:] if argv is None else list(argv))
    except KeyboardInterrupt:
        # Ctrl-C at any moment, even while the imports run: one line and the shell's status for it.
        if _debug():
            raise
        print("error: interrupted", file=sys.stderr)
        return 130


def _main(argv: list[str]) -> int:
    from .render import RenderError     # stdlib only; no renderer installed is the user's to fix
    try:
        args = build_parser().parse_args(_expression_last(argv))     # usage errors exit 2, as argparse does
        return args.func(args) or 0
    except BrokenPipeError:
        # The reader went away (``chainrule ... | head``): stop quietly, as Unix tools do.
        _silence_stdout()
        return 141
    except Exception as exc:  # noqa: BLE001 -- every error is one line, with how to see more for a bug of ours
        if _interrupted(exc):
            raise KeyboardInterrupt from None       # main says so in one line
        if _debug():
            raise
        if isinstance(exc, (CLIError, ValueError, TypeError, OSError, KeyError, ArithmeticError, RenderError,
                            ImportError, MemoryError, RecursionError)):
            print(f"error: {_one_line(exc)}", file=sys.stderr)
        else:
            print(f"error: unexpected {type(exc).__name__}: {_one_line(exc)} (a bug in chainrule: "
                  "run again with CHAINRULE_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


def _interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` is a Ctrl-C that Python wrapped in another error on its way up (a class being
    created while the imports run wraps it in RuntimeError: "Error calling __set_name__")."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` as one printable line (file contents and names can hold anything)."""
    from .text import printable

    if isinstance(exc, KeyError) and exc.args:
        message = str(exc.args[0])
    elif isinstance(exc, MemoryError):
        message = "out of memory: use a smaller model, fewer examples or a smaller --batch-size"
    elif isinstance(exc, RecursionError):
        message = "nested too deeply (Python's recursion limit)"
    else:
        message = str(exc) or type(exc).__name__
    return printable(message)


def _expression_last(argv: list[str]) -> list[str]:
    """``graph "-x*w" --at x=1,w=2``: an expression that starts with '-' is not an option.

    argparse would take ``-x*w`` for an unknown option; so for ``graph`` the first argument that
    starts with '-' but is not one of graph's options (nor an option's value) is moved after
    ``--``, where argparse reads it as the EXPRESSION. ``-h`` stays the help flag.
    """
    if not argv or argv[0] != "graph" or "--" in argv:
        return argv
    takes_value = {"--at", "--out", "--rankdir"}
    flags = {"--step", "--force", "-h", "--help"}
    rest = argv[1:]
    i = 0
    while i < len(rest):
        arg = rest[i]
        name = arg.split("=", 1)[0]
        if name in takes_value:
            i += 1 if "=" in arg else 2
            continue
        if name in flags or not arg.startswith("-") or arg.startswith("--") or arg == "-":
            i += 1
            continue
        return [argv[0], *rest[:i], *rest[i + 1:], "--", arg]
    return argv


def _debug() -> bool:
    """True when CHAINRULE_DEBUG asks for tracebacks instead of one-line errors."""
    return os.environ.get("CHAINRULE_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def _silence_stdout() -> None:
    # Python flushes stdout again at exit and would report the broken pipe a second time.
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
