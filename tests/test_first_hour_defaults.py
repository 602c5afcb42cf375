"""Each dataset's defaults train it well, and a run that ends near chance says so (issue 12, item 8)."""

import pytest

from chainrule.cli import main
from chainrule.experiment import DATASET_DEFAULTS, run

# What each dataset reaches with its defaults alone (compiled: the same numbers as eager, faster).
REACHED = {"moons": 1.0, "circles": 0.95, "blobs": 0.95, "spirals": 0.95, "xor": 0.9, "lecture": 1.0, "digits": 0.95}


@pytest.mark.parametrize("dataset", sorted(REACHED))
def test_each_dataset_trains_well_on_its_defaults(dataset, tmp_path, capsys):
    """`chainrule train --dataset NAME` with nothing else ends well above chance."""
    if dataset == "digits":
        pytest.importorskip("sklearn")
    result = run({"dataset": dataset, "compiled": True, "out": str(tmp_path / dataset)})
    assert result.accuracy >= REACHED[dataset], capsys.readouterr().out
    if result.history.test_accuracy:
        assert result.history.test_accuracy[-1] >= 0.9
    assert "about chance" not in capsys.readouterr().out


def test_defaults_are_listed_in_help(capsys):
    """`chainrule train --help` lists every dataset's own defaults."""
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for dataset, tuned in DATASET_DEFAULTS.items():
        line = next(line for line in out.splitlines() if line.strip().startswith(dataset + " "))
        for key in tuned:
            assert "--" + key.replace("_", "-") in line


def test_a_run_ending_near_chance_says_so(tmp_path, capsys):
    """Three blobs with the old one-size defaults (sgd at rate 1) end near chance, and the run says what to try."""
    assert main(["train", "--dataset", "blobs", "--optimizer", "sgd", "--lr", "1", "--compiled",
                 "--out", str(tmp_path / "b")]) == 0
    note = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    assert len(note) == 1 and "about chance" in note[0] and "--optimizer adam" in note[0] and "--init fan_in" in note[0]


def test_fan_in_init_is_a_flag(tmp_path, capsys):
    """--init is a setting: fan_in is accepted, used and saved with the configuration."""
    result = run({"dataset": "moons", "steps": 1, "init": "fan_in", "out": str(tmp_path / "f")})
    assert result.config["init"] == "fan_in"
