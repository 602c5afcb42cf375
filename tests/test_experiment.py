"""chainrule.experiment: the strict configuration and the run that writes its outputs, without the CLI."""

import json

import numpy as np
import pytest

from chainrule.data import lecture_data
from chainrule.experiment import CONFIG, ConfigError, resolve_config, run
from chainrule.serialize import load_model
from chainrule.train import predict

# The lecture's 4 examples with a tanh net and mse: a run of a fraction of a second.
LECTURE = {"dataset": "lecture", "hidden": "4,4", "activation": "tanh", "loss": "mse", "lr": 0.05,
           "schedule": "constant", "l2": 0.0, "steps": 30}


def test_defaults_fill_in_the_settings_that_depend_on_others():
    """With no overrides every key is present, and the defaults the help texts promise are filled in:
    100 moons with noise 0.1, lr 1.0 for sgd and 0.01 for adam, no sample count or noise for the
    lecture set."""
    config = resolve_config({})
    assert set(config) == set(CONFIG)
    assert (config["n_samples"], config["noise"], config["lr"], config["hidden"]) == (100, 0.1, 1.0, [16, 16])
    assert resolve_config({"optimizer": "adam"})["lr"] == 0.01
    lecture = resolve_config({"dataset": "lecture"})
    assert lecture["n_samples"] is None and lecture["noise"] is None


def test_unknown_key_is_an_error_listing_every_valid_one():
    """A misspelt key raises ConfigError (a ValueError) that suggests the close key and lists them all."""
    with pytest.raises(ConfigError) as info:
        resolve_config({"steps": 5, "learning_rate": 0.1})
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert message.startswith("unknown setting 'learning_rate'")
    assert message.endswith("the settings are: " + ", ".join(CONFIG))


def test_text_and_typed_values_resolve_alike_and_resolving_twice_changes_nothing():
    """Flag text and typed values give the same configuration, and a resolved configuration
    (e.g. one read back from config.json) resolves to itself."""
    as_text = resolve_config({"steps": "50", "lr": "0.5", "hidden": "8, 4", "compiled": "true",
                              "test_size": "10", "batch_size": "16", "noise": "0"})
    typed = resolve_config({"steps": 50, "lr": 0.5, "hidden": [8, 4], "compiled": True,
                            "test_size": 10, "batch_size": 16, "noise": 0.0})
    assert as_text == typed
    assert resolve_config(typed) == typed
    assert resolve_config(json.loads(json.dumps(typed))) == typed


@pytest.mark.parametrize("overrides, message", [
    ({"steps": 2.5}, "--steps must be a whole number, got 2.5"),
    ({"steps": True}, "--steps must be a whole number, got True"),
    ({"batch_size": "-1"}, "--batch-size must be >= 0, got '-1'"),
    ({"seed": -3}, "--seed must be >= 0, got -3"),
    ({"lr": 0}, "--lr must be > 0, got 0"),
    ({"compiled": "maybe"}, "--compiled must be true or false, got 'maybe'"),
    ({"hidden": [16, 0]}, "--hidden must be comma-separated positive whole numbers"),
    ({"schedule": "cosine"}, "--schedule: unknown schedule 'cosine'; choose one of: linear, constant"),
    ({"out": 5}, "--out must be a folder name, got 5"),
])
def test_bad_values_name_the_flag(overrides, message):
    """A value of the wrong kind or out of range raises ConfigError naming the key as its flag
    (``batch_size`` is ``--batch-size``), whether it came as text or typed."""
    with pytest.raises(ConfigError) as info:
        resolve_config(overrides)
    assert str(info.value).startswith(message)


def test_run_on_the_lecture_data_learns_and_reports_its_own_numbers(tmp_path, capsys):
    """A run on the lecture set lowers the loss step by step on the whole, and its reported loss and
    accuracy are what the trained model gives when recomputed independently with numpy."""
    result = run({**LECTURE, "out": str(tmp_path)})
    X, y = lecture_data()
    assert len(result.history.loss) == LECTURE["steps"] == len(result.history.accuracy)
    assert result.history.loss[-1] < 0.5 * result.history.loss[0]
    scores = predict(result.model, X)
    assert result.loss == pytest.approx(np.mean((scores - y) ** 2), rel=1e-12)
    assert result.accuracy == np.mean(np.sign(scores) == y)
    out = capsys.readouterr().out
    assert f"final loss {result.loss:.4f} | accuracy {result.accuracy:.1%}" in out


def test_run_writes_outputs_that_reproduce_it(tmp_path, capsys):
    """run writes model.json, config.json and history.json matching what it returns, leaves the
    caller's dict alone, and the saved config.json run again trains exactly the same weights."""
    overrides = {**LECTURE, "loss": "auto", "hidden": "3", "out": str(tmp_path / "first")}
    first = run(overrides)
    assert overrides["loss"] == "auto" and first.config["loss"] == "hinge"
    assert all(path.exists() for path in first.written)
    assert {path.name for path in first.written} >= {"model.json", "config.json", "history.json"}
    saved = json.loads((tmp_path / "first" / "config.json").read_text())
    assert saved == first.config
    assert json.loads((tmp_path / "first" / "history.json").read_text())["loss"] == first.history.loss
    X, _ = lecture_data()
    np.testing.assert_array_equal(predict(load_model(tmp_path / "first" / "model.json"), X),
                                  predict(first.model, X))

    second = run({**saved, "out": str(tmp_path / "second")})
    assert second.history.loss == first.history.loss
    assert [p.data for p in second.model.parameters()] == [p.data for p in first.model.parameters()]


def test_bad_config_fails_before_anything_is_written(tmp_path, capsys):
    """A setting the dataset cannot take stops the run before the output folder is made."""
    with pytest.raises(ValueError, match="lecture data is fixed"):
        run({**LECTURE, "noise": 0.1, "out": str(tmp_path / "never")})
    with pytest.raises(ConfigError, match="unknown setting"):
        run({"stpes": 3, "out": str(tmp_path / "never")})
    assert not (tmp_path / "never").exists()
    assert capsys.readouterr().out == ""
