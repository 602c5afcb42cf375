"""`chainrule export`: a saved model becomes a PyTorch state dict that the printed code loads, same outputs."""

import random
import sys

import pytest

torch = pytest.importorskip("torch")

from chainrule import MLP, save_model  # noqa: E402
from chainrule.cli import main  # noqa: E402
from chainrule.train import fit  # noqa: E402

CODE_HEADER = "load it in PyTorch (after import torch) with:"


def _trained_model(tmp_path):
    """A small model trained a few steps (so its weights are not the initial ones), saved to model.json."""
    model = MLP(2, [8, 8, 1], activation="relu", output_activation="linear")
    X = [[-1.0, 0.5], [0.3, -0.8], [1.2, 0.1], [-0.4, -0.9]]
    fit(model, X, [0, 1, 1, 0], steps=5, progress=False)
    return model, save_model(model, tmp_path / "model.json")


def _printed_code(out: str) -> list[str]:
    lines = out.splitlines()
    return lines[lines.index(CODE_HEADER) + 1:]


@pytest.mark.parametrize("activation,output_activation", [("relu", "linear"), ("tanh", "sigmoid")])
def test_export_writes_tensors_that_the_printed_code_loads(activation, output_activation, tmp_path, capsys,
                                                           monkeypatch):
    """The file loads with torch.load(weights_only=True) as float64 tensors only, and the two printed lines
    rebuild a Sequential whose outputs equal the chainrule model's to 1e-12."""
    model = MLP(3, [5, 4, 2], activation=activation, output_activation=output_activation)
    path = save_model(model, tmp_path / "model.json")
    monkeypatch.chdir(tmp_path)
    assert main(["export", "--model", str(path), "--to", "model.pt"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"wrote model.pt: {model!r} as a PyTorch state dict of 6 float64 tensors"
    code = _printed_code(out)
    assert len(code) == 2 and code[1] == "model.load_state_dict(torch.load('model.pt', weights_only=True))"

    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert type(state) is dict and sorted(state) == ["0.bias", "0.weight", "2.bias", "2.weight", "4.bias",
                                                     "4.weight"]
    assert all(type(t) is torch.Tensor and t.dtype == torch.float64 for t in state.values())

    namespace = {"torch": torch}
    for line in code:              # the code this test's own command printed, run as a learner would
        exec(line, namespace)
    net = namespace["model"]
    xs = [[random.uniform(-2, 2) for _ in range(3)] for _ in range(10)]
    theirs = net(torch.tensor(xs, dtype=torch.float64)).tolist()
    ours = [[o.data for o in model(x)] for x in xs]
    assert max(abs(a - b) for row, trow in zip(ours, theirs) for a, b in zip(row, trow)) < 1e-12


def test_export_of_a_trained_model_keeps_its_weights_exactly(tmp_path, capsys):
    """Every exported number is the model file's number, bit for bit, in model.parameters() order."""
    model, path = _trained_model(tmp_path)
    target = tmp_path / "out" / "weights.pth"
    target.parent.mkdir()
    assert main(["export", "--model", str(path), "--to", str(target)]) == 0
    assert f"torch.load({str(target)!r}, weights_only=True)" in capsys.readouterr().out
    state = torch.load(target, weights_only=True)
    exported = []
    for i in (0, 2, 4):
        weight, bias = state[f"{i}.weight"], state[f"{i}.bias"]
        for j in range(weight.shape[0]):
            exported += weight[j].tolist() + [bias[j].item()]
    assert exported == [p.data for p in model.parameters()]


@pytest.mark.parametrize("to,message", [
    ("model.json", "--to model.json: a PyTorch state dict is saved as FILE.pt (or .pth)"),
    ("weights", "--to weights: a PyTorch state dict is saved as FILE.pt"),
    ("missing/model.pt", "the folder missing does not exist"),
])
def test_export_rejects_a_bad_destination_in_one_line(to, message, tmp_path, capsys, monkeypatch):
    """A wrong --to is one line, exit 1, and writes nothing (the model file is left as it was)."""
    _, path = _trained_model(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = path.read_bytes()
    assert main(["export", "--model", str(path), "--to", to]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and message in captured.err and captured.err.count("\n") == 1
    assert path.read_bytes() == before
    assert not list(tmp_path.glob("*.pt"))


def test_export_rejects_a_folder_as_destination(tmp_path, capsys):
    """--to naming an existing folder says so and suggests a file name."""
    _, path = _trained_model(tmp_path)
    folder = tmp_path / "out.pt"
    folder.mkdir()
    assert main(["export", "--model", str(path), "--to", str(folder)]) == 1
    assert "it is a folder" in capsys.readouterr().err


def test_export_rejects_a_bad_model_file_in_one_line(tmp_path, capsys):
    """A missing or broken model file is the model loader's one-line error, exit 1."""
    assert main(["export", "--model", str(tmp_path / "nope.json"), "--to", str(tmp_path / "m.pt")]) == 1
    assert capsys.readouterr().err == f"error: {tmp_path / 'nope.json'}: no such file\n"
    (tmp_path / "bad.json").write_text("{")
    assert main(["export", "--model", str(tmp_path / "bad.json"), "--to", str(tmp_path / "m.pt")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not valid JSON" in err and err.count("\n") == 1
    assert not (tmp_path / "m.pt").exists()


def test_export_without_torch_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    """With PyTorch missing the command prints the install hint as one line and exits 1."""
    _, path = _trained_model(tmp_path)
    monkeypatch.setitem(sys.modules, "torch", None)
    assert main(["export", "--model", str(path), "--to", str(tmp_path / "m.pt")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and 'pip install "chainrule[torch]"' in err and err.count("\n") == 1
    assert not (tmp_path / "m.pt").exists()
