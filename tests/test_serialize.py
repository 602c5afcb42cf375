"""Saving and loading models as JSON: exact round trips, and every malformed file is a clear error."""

import json
import math
import random

import pytest

from chainrule import MLP, ModelFileError, load_model, save_model
from chainrule.serialize import model_from_dict, model_to_dict


def _demo_model():
    return MLP(2, [16, 16, 1], activation="relu", output_activation="linear")


def _outputs(model, points):
    outs = []
    for x in points:
        out = model(x)
        outs.append([o.data for o in out] if isinstance(out, list) else out.data)
    return outs


POINTS = [[0.5, -0.2], [1.5, 0.3], [-1.0, 2.0], [0.0, 0.0]]


@pytest.mark.parametrize("make", [
    _demo_model,
    lambda: MLP(2, [4, 4, 1]),
    lambda: MLP(2, [5, 3], activation="sigmoid", output_activation="linear"),
    lambda: MLP(2, [1], activation="relu", output_activation="tanh"),
])
def test_round_trip_gives_identical_outputs(tmp_path, make):
    """A saved and reloaded model has the same architecture, bit-identical parameters and outputs."""
    model = make()
    path = save_model(model, tmp_path / "model.json")
    loaded = load_model(path)
    assert repr(loaded) == repr(model)
    assert [p.data for p in loaded.parameters()] == [p.data for p in model.parameters()]
    assert [l.activation for l in loaded.layers] == [l.activation for l in model.layers]
    assert _outputs(loaded, POINTS) == _outputs(model, POINTS)


def test_file_is_plain_json_with_the_documented_fields(tmp_path):
    """The file is readable JSON with format, version, architecture and a flat list of parameters."""
    model = _demo_model()
    save_model(model, tmp_path / "m.json", metadata={"steps": 100})
    d = json.loads((tmp_path / "m.json").read_text())
    assert d["format"] == "chainrule-mlp" and d["version"] == 1
    assert (d["nin"], d["nouts"], d["activation"], d["output_activation"]) == (2, [16, 16, 1], "relu", "linear")
    assert len(d["parameters"]) == 337 and d["metadata"] == {"steps": 100}


def test_loading_does_not_disturb_the_random_state(tmp_path):
    """Loading a model leaves Python's random state where it was, so seeded runs stay reproducible."""
    save_model(_demo_model(), tmp_path / "m.json")
    random.seed(7)
    expected = random.random()
    random.seed(7)
    load_model(tmp_path / "m.json")
    assert random.random() == expected


def _valid_dict():
    return model_to_dict(MLP(2, [3, 1], activation="relu", output_activation="linear"))


def _write(tmp_path, content, name="model.json"):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def _broken(**changes):
    d = _valid_dict()
    for key, value in changes.items():
        if value is _DELETE:
            del d[key]
        else:
            d[key] = value
    return d


_DELETE = object()


@pytest.mark.parametrize("content, match", [
    ("{not json", "not valid JSON"),
    ("", "not valid JSON"),
    (b"\xff\xfe\x00garbage", "not a text"),
    ("[1, 2, 3]", "JSON object at the top level"),
    (_broken(format="keras"), "not a chainrule model file"),
    (_broken(format=_DELETE), "not a chainrule model file"),
    (_broken(version=2), "version 2 is not supported"),
    (_broken(version="1"), "\"version\" must be a whole number"),
    (_broken(version=True), "\"version\" must be a whole number"),
    (_broken(nin=_DELETE), "missing field\\(s\\): nin"),
    (_broken(extra=1), "unknown field\\(s\\): 'extra'"),
    (_broken(nin=0), "\"nin\" must be a whole number from 1 to"),
    (_broken(nin=2.0), "\"nin\" must be a whole number from 1 to"),
    (_broken(nouts=[]), "\"nouts\" must be a non-empty list"),
    (_broken(nouts=[3, "1"]), "\"nouts\" must be a non-empty list"),
    (_broken(nouts=3), "\"nouts\" must be a non-empty list"),
    (_broken(activation="gelu"), "\"activation\" must be one of"),
    (_broken(output_activation=["relu"]), "\"output_activation\" must be one of"),
    (_broken(metadata=[1]), "\"metadata\" must be a JSON object"),
    (_broken(parameters="0.1 0.2"), "\"parameters\" must be a list"),
    (_broken(nouts=[4, 1]), "expected 17 parameters for MLP\\(2, \\[4, 1\\]\\), found 13"),
])
def test_malformed_files_name_the_problem(tmp_path, content, match):
    """Each kind of malformed or mismatched file raises ModelFileError naming the file and the problem."""
    path = _write(tmp_path, content)
    with pytest.raises(ModelFileError, match=match) as info:
        load_model(path)
    assert str(info.value).startswith(str(path) + ": ")
    assert isinstance(info.value, ValueError)


def test_parameter_count_mismatch_message(tmp_path):
    """One missing parameter in the demo model's file gives the exact count message."""
    d = model_to_dict(_demo_model())
    d["parameters"].pop()
    path = _write(tmp_path, d)
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    assert str(info.value) == f"{path}: expected 337 parameters for MLP(2, [16, 16, 1]), found 336"


@pytest.mark.parametrize("bad, match", [
    ("NaN", "NaN is not a finite number"),
    ("Infinity", "Infinity is not a finite number"),
    ("-Infinity", "-Infinity is not a finite number"),
    ("1e400", "parameters\\[5\\] is inf"),
    ("1" + "0" * 400, "parameters\\[5\\] is too large"),
    ("true", "parameters\\[5\\] must be a number"),
    ("\"0.5\"", "parameters\\[5\\] must be a number"),
    ("null", "parameters\\[5\\] must be a number"),
])
def test_non_finite_or_non_numeric_parameters_are_rejected(tmp_path, bad, match):
    """NaN, infinities, overflowing numbers and non-numbers among the parameters are ModelFileErrors."""
    d = _valid_dict()
    d["parameters"][5] = 12345.0
    text = json.dumps(d).replace("12345.0", bad)
    with pytest.raises(ModelFileError, match=match):
        load_model(_write(tmp_path, text))


def test_missing_file_is_a_model_file_error(tmp_path):
    """A path with no file raises ModelFileError saying so (the CLI prints it as one line)."""
    with pytest.raises(ModelFileError, match="no such file"):
        load_model(tmp_path / "nope.json")


def test_nothing_is_half_loaded(tmp_path, monkeypatch):
    """A file that fails validation never constructs an MLP (the check runs before building)."""
    import chainrule.serialize as serialize
    d = _valid_dict()
    d["parameters"][-1] = float("inf")
    built = []
    monkeypatch.setattr(serialize, "MLP", lambda *a, **k: built.append(1))
    with pytest.raises(ModelFileError):
        model_from_dict(d)
    assert built == []


def test_no_pickle_no_code():
    """The loader is plain JSON: the module imports no pickle-like module and calls no eval/exec."""
    import ast
    import inspect

    import chainrule.serialize as serialize
    tree = ast.parse(inspect.getsource(serialize))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in node.names} | {node.module.split(".")[0] for node in ast.walk(tree)
                                            if isinstance(node, ast.ImportFrom) and node.module}
    called = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert not imported & {"pickle", "marshal", "shelve", "dill", "cloudpickle", "joblib"}
    assert not called & {"eval", "exec", "compile", "__import__"}


def test_saving_a_diverged_model_is_refused(tmp_path):
    """A model with a NaN parameter cannot be saved, and no file is written."""
    model = _demo_model()
    model.parameters()[3].data = math.nan
    with pytest.raises(ValueError, match="parameter 3 is nan"):
        save_model(model, tmp_path / "m.json")
    assert list(tmp_path.iterdir()) == []


def test_saving_a_mixed_activation_model_is_refused(tmp_path):
    """An MLP whose hidden layers were edited to different activations cannot be described by the format."""
    model = MLP(2, [3, 3, 1])
    model.layers[1].neurons[0].activation = "relu"
    with pytest.raises(ValueError, match="layer 1"):
        save_model(model, tmp_path / "m.json")


def test_only_mlps_can_be_saved(tmp_path):
    """Saving something that is not an MLP is a TypeError."""
    from chainrule import Neuron
    with pytest.raises(TypeError, match="only an MLP"):
        save_model(Neuron(2), tmp_path / "m.json")


def test_save_replaces_an_existing_file_and_leaves_no_temporary(tmp_path):
    """Saving over an existing file replaces it completely; no temporary file is left behind."""
    path = tmp_path / "model.json"
    path.write_text("old contents " * 1000)
    save_model(MLP(1, [1]), path)
    assert load_model(path).nin == 1
    assert [p.name for p in tmp_path.iterdir()] == ["model.json"]


def test_save_creates_folders_and_uses_normal_permissions(tmp_path):
    """Missing parent folders are created, and the file gets the same permissions as any new file."""
    path = save_model(MLP(1, [1]), tmp_path / "runs" / "moons" / "model.json")
    reference = tmp_path / "reference.txt"
    reference.write_text("x")
    assert path.is_file()
    assert path.stat().st_mode == reference.stat().st_mode


def test_save_to_a_folder_is_a_clear_error(tmp_path):
    """Giving a folder instead of a file name says so and suggests a file name."""
    with pytest.raises(IsADirectoryError, match="it is a folder"):
        save_model(MLP(1, [1]), tmp_path)
