"""What the README says about backward and timings is precise, and CI says clearly when it has no browser
(issue 12, items 19 and 20)."""

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from chainrule import Value

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_says_what_a_second_backward_does_in_each_library():
    """chainrule doubles the leaf gradients; PyTorch raises unless retain_graph=True, and then doubles them too."""
    torch = pytest.importorskip("torch")
    rule = README[README.index("**The gradient rule.**"):].split("\n\n")[0]
    assert "as in PyTorch" not in rule
    assert "retain_graph=True" in rule and "RuntimeError" in rule
    a = Value(3.0); b = a * a
    b.backward(); b.backward()
    assert a.grad == 12.0
    t = torch.tensor(3.0, requires_grad=True); tb = t * t
    tb.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        tb.backward()
    t.grad = None; tb = t * t
    tb.backward(retain_graph=True); tb.backward()
    assert t.grad.item() == 12.0


def test_readme_timings_state_their_conditions():
    """The demo's timings say on what machine, quiet and loaded, rather than one bare number."""
    line = " ".join(README[README.index("- `chainrule demo` trains eagerly"):].split("\n\n")[0].split())
    assert "quiet" in line and "loaded" in line
    assert re.search(r"\d+ to \d+ s", line), line


def test_readme_test_command_says_it_needs_chromium():
    """The test command is introduced with the Chromium it needs."""
    before = README[:README.index("pip install -e \".[test]\" && python -m pytest")]
    assert "Chromium" in before[before.index("**Run the tests**"):]


@pytest.mark.skipif(os.name != "posix", reason="a bash script")
def test_ci_stops_clearly_without_a_browser(tmp_path):
    """With no Chromium and an apt-get that fails, .ci/install-chromium exits 1 with one line saying what to do."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "apt-get"
    fake.write_text("#!/bin/sh\nexit 100\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}      # nothing but the failing apt-get on PATH
    run = subprocess.run(["/bin/bash", str(ROOT / ".ci" / "install-chromium")], env=env, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 1
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("error: the browser test needs Chromium")
    assert "run .ci/run again" in run.stderr
