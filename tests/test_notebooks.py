"""The tutorial notebooks: shipped inside the package, stored clean, copied out by ``chainrule notebooks``.

Executing them is CI's other job: ``python -m pytest --nbmake src/chainrule/notebooks``.
"""

import json
import tomllib
from importlib.resources import files
from pathlib import Path

from chainrule.cli import main

EXPECTED = ["01-derivatives.ipynb", "02-value-and-backprop.ipynb", "03-training-an-mlp.ipynb",
            "04-going-fast.ipynb", "05-graduating-to-pytorch.ipynb",
            "06-watching-it-learn.ipynb"]
ROOT = Path(__file__).resolve().parent.parent


def _packaged() -> dict[str, bytes]:
    folder = files("chainrule") / "notebooks"
    return {entry.name: entry.read_bytes() for entry in folder.iterdir() if entry.name.endswith(".ipynb")}


def test_the_package_holds_the_five_notebooks():
    """importlib.resources finds exactly the five tutorial notebooks inside the chainrule package."""
    assert sorted(_packaged()) == EXPECTED


def test_notebooks_are_stored_without_outputs():
    """Every code cell is stored with no outputs and no execution count, so the repository stays small."""
    for name, raw in _packaged().items():
        nb = json.loads(raw)
        assert nb["nbformat"] == 4, name
        code = [cell for cell in nb["cells"] if cell["cell_type"] == "code"]
        assert code, f"{name} has no code cells"
        for cell in code:
            assert cell["outputs"] == [] and cell["execution_count"] is None, f"{name}: {cell['source'][:60]!r}"


def test_every_notebook_pins_its_numbers_with_asserts():
    """Each notebook checks its key numbers with at least one assert, so running it in CI can fail."""
    for name, raw in _packaged().items():
        sources = "\n".join("".join(c["source"]) for c in json.loads(raw)["cells"] if c["cell_type"] == "code")
        assert "assert " in sources, name


def test_pyproject_ships_the_notebooks_as_package_data():
    """The wheel includes notebooks/*.ipynb, so a PyPI install can copy them out."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "notebooks/*.ipynb" in config["tool"]["setuptools"]["package-data"]["chainrule"]


def test_cli_copies_the_notebooks_and_prints_how_to_open_them(tmp_path, capsys):
    """`chainrule notebooks --dest DIR` writes byte-identical copies and prints `jupyter lab DIR`."""
    dest = tmp_path / "nbs"
    assert main(["notebooks", "--dest", str(dest)]) == 0
    packaged = _packaged()
    assert sorted(p.name for p in dest.iterdir()) == EXPECTED
    for name, raw in packaged.items():
        assert (dest / name).read_bytes() == raw
    assert f"jupyter lab {dest}" in capsys.readouterr().out


def test_cli_default_destination_is_chainrule_notebooks(tmp_path, monkeypatch):
    """Without --dest the notebooks land in ./chainrule-notebooks."""
    monkeypatch.chdir(tmp_path)
    assert main(["notebooks"]) == 0
    assert sorted(p.name for p in (tmp_path / "chainrule-notebooks").iterdir()) == EXPECTED


def test_cli_refuses_to_overwrite_a_learners_notebook_without_force(tmp_path, capsys):
    """An existing notebook is left alone (exit 1, error names it) unless --force is given."""
    dest = tmp_path / "nbs"
    dest.mkdir()
    mine = dest / EXPECTED[1]
    mine.write_text("my edits")
    assert main(["notebooks", "--dest", str(dest)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and EXPECTED[1] in err and "--force" in err
    assert mine.read_text() == "my edits"
    assert not (dest / EXPECTED[0]).exists()   # nothing is half-copied
    assert main(["notebooks", "--dest", str(dest), "--force"]) == 0
    assert mine.read_bytes() == _packaged()[EXPECTED[1]]


def test_cli_rejects_a_destination_that_is_a_file(tmp_path, capsys):
    """--dest pointing at a file is a one-line user error, not a traceback."""
    target = tmp_path / "file.txt"
    target.write_text("x")
    assert main(["notebooks", "--dest", str(target)]) == 1
    assert "not a folder" in capsys.readouterr().err
