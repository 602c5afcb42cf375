"""The training commands: `chainrule demo`, `chainrule train`, `chainrule predict`, through cli.main."""

import json
import re
import sys

import numpy as np
import pytest

from chainrule.cli import main
from chainrule.data import DATASETS, make_moons
from chainrule.experiment import CONFIG
from chainrule.losses import LOSSES
from chainrule.nn import ACTIVATIONS
from chainrule.optim import OPTIMIZERS
from chainrule.serialize import load_model
from chainrule.train import accuracy, predict


def _final_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("final loss"))


def test_demo_defaults_reach_100_percent_and_write_everything(tmp_path, capsys):
    """`chainrule demo` (its defaults; compiled so the test is quick, the numbers equal eager training's)
    prints a log line per 10 steps and 100% accuracy, and writes the pictures, the model and the config;
    the saved model, reloaded, classifies the demo's 100 moons all right."""
    out_dir = tmp_path / "demo"
    assert main(["demo", "--out", str(out_dir), "--compiled"]) == 0
    out = capsys.readouterr().out
    assert [line.split(" |")[0] for line in out.splitlines() if line.startswith("step ")] == \
        [f"step {k}" for k in range(0, 100, 10)] + ["step 99"]
    assert "| accuracy 100.0%" in _final_line(out)
    assert float(_final_line(out).split()[2]) < 0.05
    assert str(out_dir) in out
    for name in ("model.json", "config.json", "history.json", "decision_boundary.png", "loss_curve.png"):
        assert (out_dir / name).stat().st_size > 0, name
    config = json.loads((out_dir / "config.json").read_text())
    assert {k: config[k] for k in ("dataset", "n_samples", "noise", "hidden", "activation", "loss", "optimizer",
                                   "lr", "schedule", "l2", "steps", "batch_size", "seed")} == {
        "dataset": "moons", "n_samples": 100, "noise": 0.1, "hidden": [16, 16], "activation": "relu",
        "loss": "hinge", "optimizer": "sgd", "lr": 1.0, "schedule": "linear", "l2": 1e-4, "steps": 100,
        "batch_size": 0, "seed": 1337}
    model = load_model(out_dir / "model.json")
    assert repr(model) == "MLP(2 -> 16 relu -> 16 relu -> 1 linear, 337 parameters)"
    X, y = make_moons(100, noise=0.1, seed=1337)
    assert accuracy(predict(model, X), y) == 1.0


def test_demo_eager_and_compiled_train_the_same_model(tmp_path, capsys):
    """The demo's eager and --compiled runs (a few steps) end with the same weights."""
    assert main(["demo", "--out", str(tmp_path / "e"), "--steps", "4"]) == 0
    assert main(["demo", "--out", str(tmp_path / "c"), "--steps", "4", "--compiled"]) == 0
    eager, compiled = (json.loads((tmp_path / d / "model.json").read_text())["parameters"] for d in "ec")
    np.testing.assert_allclose(compiled, eager, rtol=1e-9, atol=1e-12)


def test_demo_without_matplotlib_still_trains_and_saves(tmp_path, capsys, monkeypatch):
    """Without matplotlib the demo still trains and saves the model, and prints a one-line install hint
    instead of pictures."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["demo", "--out", str(tmp_path), "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "model.json").exists() and not list(tmp_path.glob("*.png"))
    hints = [line for line in out.splitlines() if "chainrule[plot]" in line]
    assert len(hints) == 1 and hints[0].startswith("no pictures")


def test_train_several_classes_with_a_test_split(tmp_path, capsys):
    """`chainrule train` on three blobs picks cross-entropy and 3 outputs, holds out a test set, and
    saves the resolved configuration (every key, explicit and default) beside the outputs."""
    out_dir = tmp_path / "blobs"
    argv = ["train", "--dataset", "blobs", "--hidden", "8", "--optimizer", "adam", "--steps", "15",
            "--test-size", "0.25", "--batch-size", "10", "--n-samples", "40", "--out", str(out_dir)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    config = json.loads((out_dir / "config.json").read_text())
    assert set(config) == set(CONFIG)
    assert (config["loss"], config["lr"], config["hidden"], config["test_size"]) == ("cross_entropy", 0.05, [8], 0.25)
    assert load_model(out_dir / "model.json").nouts == [8, 3]
    assert "30 examples, 10 held out for testing" in out and "test accuracy" in _final_line(out)
    history = json.loads((out_dir / "history.json").read_text())
    assert len(history["loss"]) == 15 and history["test_step"][-1] == 14


def test_train_lecture_data_without_pictures_of_the_plane(tmp_path, capsys):
    """The lecture's 4 examples (3 inputs) train with mse; there is no decision-boundary picture for
    3 inputs, but the loss curve is drawn."""
    assert main(["train", "--dataset", "lecture", "--hidden", "4,4", "--activation", "tanh", "--loss", "mse",
                 "--steps", "20", "--lr", "0.05", "--schedule", "constant", "--out", str(tmp_path)]) == 0
    assert not (tmp_path / "decision_boundary.png").exists()
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["n_samples"] is None and config["noise"] is None


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "mnist"], "--dataset: unknown dataset 'mnist'; choose one of: " + ", ".join(DATASETS)),
    (["--loss", "l1"], "--loss: unknown loss 'l1'; choose one of: auto, " + ", ".join(LOSSES)),
    (["--optimizer", "rmsprop"], "--optimizer: unknown optimizer 'rmsprop'; choose one of: " + ", ".join(OPTIMIZERS)),
    (["--activation", "gelu"], "--activation: unknown activation 'gelu'; choose one of: " + ", ".join(ACTIVATIONS)),
    (["--schedule", "cosine"], "--schedule: unknown schedule 'cosine'; choose one of: linear, constant"),
    (["--hidden", "16,x"], "--hidden must be comma-separated positive whole numbers like 16,16"),
    (["--hidden", "16,0"], "--hidden must be comma-separated positive whole numbers"),
    (["--steps", "ten"], "--steps must be a whole number, got 'ten'"),
    (["--steps", "0"], "--steps must be >= 1, got '0'"),
    (["--lr", "-1"], "--lr must be > 0"),
    (["--noise", "nan"], "--noise must be a finite number"),
    (["--dataset", "lecture", "--noise", "0.1"], "the lecture data is fixed: it takes no noise"),
])
def test_train_rejects_bad_settings_in_one_line(argv, message, tmp_path, capsys):
    """Every bad setting exits 1 with one `error: ...` line naming the setting (and the valid choices),
    before training starts or anything is written."""
    assert main(["train", "--out", str(tmp_path / "x"), *argv]) == 1
    out, err = capsys.readouterr()
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_help_lists_every_valid_name():
    """The --help texts of the choice settings name every value the library accepts."""
    for key, valid in (("dataset", DATASETS), ("optimizer", OPTIMIZERS), ("activation", ACTIVATIONS),
                       ("loss", ["auto", *LOSSES])):
        assert set(valid) <= set(re.findall(r"[a-z_]+", CONFIG[key][1])), key


def test_predict_prints_scores_and_classes(tmp_path, capsys):
    """`chainrule predict` prints, for each point, the loaded model's score and class (score > 0 is class 1);
    a point may start with a minus sign."""
    assert main(["demo", "--out", str(tmp_path), "--steps", "3"]) == 0
    capsys.readouterr()
    model = load_model(tmp_path / "model.json")
    points = ["0.5,-0.2", "1,0.3", "-1.5,1"]
    assert main(["predict", "--model", str(tmp_path / "model.json"), *points]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    for line, text in zip(lines, points):
        score = model([float(v) for v in text.split(",")]).data
        assert line == f"{text}  score {score:.4f}  class {int(score > 0)}"


@pytest.mark.parametrize("point, message", [
    ("0.5", "point 1 ('0.5') has 1 number, but the model takes 2 inputs"),
    ("0.5,1,2", "has 3 numbers, but the model takes 2 inputs"),
    ("0.5,abc", "point 1 ('0.5,abc') is not comma-separated numbers"),
    ("inf,1", "not finite"),
])
def test_predict_rejects_bad_points(point, message, tmp_path, capsys):
    """A point of the wrong width or not made of numbers is a one-line error."""
    assert main(["demo", "--out", str(tmp_path), "--steps", "1"]) == 0
    capsys.readouterr()
    assert main(["predict", "--model", str(tmp_path / "model.json"), point]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"format": "chainrule-mlp"}', "model.json"),
    (None, "no such file"),
])
def test_predict_rejects_bad_model_files(content, message, tmp_path, capsys):
    """A missing, malformed or incomplete model file is a one-line error naming the file."""
    path = tmp_path / "model.json"
    if content is not None:
        path.write_text(content)
    assert main(["predict", "--model", str(path), "0,0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}") and message in err and err.count("\n") == 1
