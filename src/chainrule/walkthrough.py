"""Watching backward run: the chain-rule step of every node, as text and as a picture per step.

``explain(root)`` prints each local step of one backward pass with its numbers::

    n.grad += (1 - o.data**2) * o.grad = (1 - 0.7071**2) * 1 -> 0.5

``step_through(root)`` records one drawing per node backward visits (that node highlighted, the
gradients as they stand), playable in Jupyter or saved as a standalone HTML page.

Looking changes nothing: both show a pass that starts from zero gradients (as after
``zero_grad()``) and put every ``.grad`` back as it was, so ``o.backward(); explain(o)`` leaves
the gradients ``o.backward()`` gave. Numbers are shown with four significant digits, a negative
one in parentheses (``(-3) * 0.5``), and a name that is not a plain word in parentheses
(``(x1*w1 + b).grad``), so no line can be misread.
"""

from __future__ import annotations

import html
import re
import sys
import uuid
from pathlib import Path
from typing import Callable, NamedTuple, TextIO

from .engine import PRIMITIVES, SCALAR, Value, topological_order
from .render import RenderError, render
from .viz import _dot_source, _fallback_html, _strip_xml_prolog, _walk

__all__ = ["Explanation", "Frame", "StepThrough", "explain", "step_through"]

# What each input's gradient gains, per primitive: one row per op, one formula per input, in the
# names of the local derivative rules of engine.PRIMITIVES. {a} and {b} are the inputs' data,
# {out} the result's data, {g} the result's gradient, {k} a constant exponent and {k1} is k - 1.
FORMULAS: dict[str, tuple[str, ...]] = {
    "+":       ("{g}", "{g}"),
    "*":       ("{b} * {g}", "{a} * {g}"),
    "/":       ("{g} / {b}", "-{out} / {b} * {g}"),
    "**":      ("{b} * {a}**({b} - 1) * {g}", "{out} * log({a}) * {g}"),
    "**k":     ("{k} * {a}**{k1} * {g}",),
    "exp":     ("{out} * {g}",),
    "log":     ("{g} / {a}",),
    "sqrt":    ("{g} / (2 * {out})",),
    "tanh":    ("(1 - {out}**2) * {g}",),
    "sigmoid": ("{out} * (1 - {out}) * {g}",),
    "relu":    ("[{a} > 0] * {g}",),
}

_NAME_LIMIT = 30  # a name must fit on a line: longer expressions are shortened, or called node<i>


def _spellings(rule: str, op: str, parts: list[str]):
    """Ways to name a result by the expression that made it, fullest first; ``…`` stands for an
    input whose name is too long (``(…+L0.N3.b)``, ``tanh(…)``)."""
    if rule in ("+", "*", "**", "/") and len(parts) == 2:
        a, b = parts
        yield f"({a}{op}{b})"
        # Keep the shorter side, which is usually the one a reader knows (a parameter's name).
        shorter_first = [f"(…{op}{b})", f"({a}{op}…)"] if len(b) <= len(a) else [f"({a}{op}…)", f"(…{op}{b})"]
        yield from shorter_first
    elif rule == "**k":
        yield f"({parts[0]}{op})"
        yield f"(…{op})"
    else:
        yield f"{op}({', '.join(parts)})"
        yield f"{op}(…)"


def _names(order: list[Value], limit: int = _NAME_LIMIT) -> dict[int, str]:
    """A readable name per node: its label, else its expression like ``(x1*w1)`` (at most ``limit``
    characters), else ``node7``."""
    from .text import printable

    names: dict[int, str] = {}
    used: set[str] = set()
    for i, node in enumerate(order):
        if node.label:
            name = _operand(printable(node.label))
        elif not node._prev:
            name = f"node{i}"
        else:
            parts = [names[id(child)] for child in node._prev]
            # Each name is one node's: a spelling another node already has is skipped.
            name = next((text for text in _spellings(node._rule, node._op, parts)
                         if len(text) <= limit and text not in used), f"node{i}")
        used.add(name)
        names[id(node)] = name
    return names


def _number(x: float) -> str:
    """Four significant digits: ``0.7071``, ``-1.5``, ``3.333e-05``, so a product shown equals the
    product of the numbers shown (fixed decimals would print 0.0000 for 3e-05). -0.0 prints as 0."""
    return f"{x:.4g}" if x != 0 else "0"


def _factor(x: float) -> str:
    """A number inside a formula: a negative one in parentheses, ``(1 - (-1)**2)``."""
    text = _number(x)
    return f"({text})" if text.startswith("-") else text


def _constant(k: float) -> str:
    return f"{k:g}" if k >= 0 else f"({k:g})"


_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


def _operand(name: str) -> str:
    """A name that can stand before ``.grad`` or ``.data`` without being misread: a plain word
    (``x1``, ``L0.N1.w0``), a call (``tanh(n)``) or a parenthesised group stays; anything else, such
    as the label ``x1*w1 + b``, gets parentheses."""
    if _PLAIN_NAME.fullmatch(name) or _one_group(name):
        return name
    return f"({name})"


def _one_group(name: str) -> bool:
    """True for ``(...)`` or ``f(...)`` whose first parenthesis closes at the very end."""
    match = re.match(r"[A-Za-z_][A-Za-z0-9_]*\(|\(", name)
    if not match or not name.endswith(")"):
        return False
    depth = 0
    for i, ch in enumerate(name[match.end() - 1:], match.end() - 1):
        depth += (ch == "(") - (ch == ")")
        if depth == 0:
            return i == len(name) - 1
    return False


class _Line(NamedTuple):
    target: str      # "w1.grad"
    formula: str     # "x1.data * n.grad"
    numbers: str     # "2.0000 * 0.5000"
    term: float      # what was added
    total: float | None  # the gradient after adding, when something was there before


def _step_lines(node: Value, names: dict[int, str], known: dict[int, float]) -> list[_Line]:
    """The chain-rule lines of one node's local step; call after its ``_backward()`` ran.

    ``known`` holds each node's gradient before this step (all 0 when the pass starts) and is
    brought up to date, so a line can say when a gradient accumulates.
    """
    if not node._prev:
        return []
    rule = PRIMITIVES.get(node._rule)
    if rule is None:
        raise NotImplementedError(f"explain has no formula for op {node._rule!r}: it explains the table's ops "
                                  "(chainrule.primitive adds one), not closures")
    inputs = [child.data for child in node._prev]
    args = inputs + ([node._arg] if node._arg is not None else [])
    terms = rule.backward(SCALAR, node.grad, node.data, *args)
    row = FORMULAS.get(node._rule)
    if row is None:
        # An op added with chainrule.primitive has no formula text: show its local slope as a number.
        slopes = rule.backward(SCALAR, 1.0, node.data, *args)
        row = tuple(f"{_factor(s)} * {{g}}" for s in slopes)
    out = names[id(node)]
    symbols = {"out": f"{out}.data", "g": f"{out}.grad"}
    values = {"out": _factor(node.data), "g": _factor(node.grad)}
    for key, child in zip("ab", node._prev):
        symbols[key] = f"{names[id(child)]}.data"
        values[key] = _factor(child.data)
    if node._arg is not None:
        symbols["k"] = values["k"] = _constant(node._arg)
        symbols["k1"] = values["k1"] = _constant(node._arg - 1)
    lines = []
    for child, template, term in zip(node._prev, row, terms):
        # An input may appear twice (x * x): its second line starts from the first line's total.
        had = known[id(child)]
        known[id(child)] = had + term
        lines.append(_Line(f"{names[id(child)]}.grad", template.format(**symbols), template.format(**values),
                           float(term), had + term if had != 0 else None))
    for child in node._prev:
        known[id(child)] = child.grad
    return lines


def _format(lines: list[_Line], root_name: str | None = None) -> list[str]:
    """Aligned text: the ``+=``, ``=`` and ``->`` of every line in one column each."""
    if not lines and root_name is None:
        return []
    width_t = max([len(line.target) for line in lines] + [len(root_name or "") + 5])
    width_f = max([len(line.formula) for line in lines] + [0])
    width_n = max([len(line.numbers) for line in lines] + [0])
    out = []
    if root_name is not None:
        out.append(f"{root_name + '.grad':<{width_t}}  = 1  (start: the output's gradient with respect to itself)")
    for line in lines:
        text = (f"{line.target:<{width_t}} += {line.formula:<{width_f}} = {line.numbers:<{width_n}} "
                f"-> {_number(line.term)}")
        if line.total is not None:
            text += f"  (now {_number(line.total)})"
        out.append(text.rstrip())
    return out


def step_caption(node: Value, names: dict[int, str], known: dict[int, float], first: bool) -> list[str]:
    """The lines shown for one node's step of backward: its chain-rule lines, or why a leaf has none.

    Call it right after the node's ``_backward()`` ran (``backward(on_step=...)`` does). ``first``
    adds the start line of the output. ``names`` and ``known`` are as for :func:`explain`.

    >>> x = Value(3.0, label="x"); y = x * x; y.label = "y"
    >>> order = topological_order(y); names = _names(order); known = {id(v): 0.0 for v in order}
    >>> captions = []
    >>> y.backward(on_step=lambda node: captions.append(step_caption(node, names, known, node is y)))
    >>> captions[1]
    ['x is a leaf (an input, parameter or constant): nothing to pass back; x.grad = 6']
    """
    name = names[id(node)]
    caption = _format(_step_lines(node, names, known), name if first else None)
    if not node._prev:
        caption.append(f"{name} is a leaf (an input, parameter or constant): nothing to pass back; "
                       f"{name}.grad = {_number(node.grad)}")
    return caption


def _fresh_pass(root: Value, on_step: Callable[[Value], None]) -> list[Value]:
    """One backward pass from zero gradients, watched by ``on_step``; afterwards every node's
    ``.grad`` is put back as it was (also when ``on_step`` or a rule raises). Returns the nodes."""
    order = topological_order(root)
    saved = [v.grad for v in order]
    try:
        for v in order:
            v.grad = 0.0
        root.backward(on_step=on_step)
    finally:
        for v, grad in zip(order, saved):
            v.grad = grad
    return order


class Explanation(str):
    """The text ``explain`` printed. In a notebook, as a cell's last line, it shows nothing more:
    the table was printed once already."""

    def _ipython_display_(self) -> None:
        pass


def explain(root: Value, file: TextIO | None = None) -> Explanation:
    """Print each node's chain-rule step of ``root.backward()``, in the order backward runs them.

    The pass starts from zero gradients, and afterwards every ``.grad`` is as it was before: this
    only looks. Returns the printed text (as an :class:`Explanation`, a str).

    >>> x1 = Value(2.0, label="x1"); w1 = Value(-3.0, label="w1")
    >>> n = x1 * w1; n.label = "n"
    >>> text = explain(n)
    n.grad   = 1  (start: the output's gradient with respect to itself)
    x1.grad += w1.data * n.grad = (-3) * 1 -> -3
    w1.grad += x1.data * n.grad = 2 * 1    -> 2
    >>> x1.grad, w1.grad
    (0.0, 0.0)
    """
    order = topological_order(root)
    names = _names(order)
    known = {id(v): 0.0 for v in order}
    lines: list[_Line] = []
    _fresh_pass(root, lambda node: lines.extend(_step_lines(node, names, known)))
    text = Explanation("\n".join(_format(lines, names[id(root)])) + "\n")
    print(text, end="", file=sys.stdout if file is None else file)
    return text


# --- step by step, as pictures -------------------------------------------------------------------

class Frame(NamedTuple):
    """One step of backward: the node whose local step ran, the text of that step, the drawing."""
    step: int
    node: Value
    name: str
    caption: str
    source: str   # DOT text of the drawing at this step


class StepThrough:
    """The frames of one backward pass, one per node visited; shows itself in Jupyter.

    Each frame's SVG is rendered once, the first time it is needed. ``.save("steps.html")``
    writes a page that plays the frames with no server and no network.
    """

    def __init__(self, frames: list[Frame], note: str = ""):
        self.frames = frames
        self.note = note
        self._svgs: list[str] | None = None

    def __len__(self) -> int:
        return len(self.frames)

    def __repr__(self) -> str:
        return f"<chainrule StepThrough: {len(self.frames)} steps{'; ' + self.note if self.note else ''}>"

    def svgs(self) -> list[str]:
        """Every frame's drawing as SVG text (rendered on first use, then remembered)."""
        if self._svgs is None:
            self._svgs = [render(frame.source, "svg").decode("utf-8") for frame in self.frames]
        return self._svgs

    def _frame_bodies(self) -> list[str]:
        try:
            return [_strip_xml_prolog(svg) for svg in self.svgs()]
        except RenderError as exc:
            return [_fallback_html(frame.source, str(exc)) for frame in self.frames]

    def _repr_html_(self) -> str:
        try:
            return _player_html(self, f"crs{uuid.uuid4().hex[:12]}")
        except Exception as exc:  # noqa: BLE001 -- a notebook display must not raise
            return f"<pre>{html.escape(repr(self))}\ncould not show the steps: {html.escape(str(exc))}</pre>"

    def save(self, path) -> Path:
        """Write a standalone HTML page (frames embedded, plain inline JavaScript, no network)."""
        path = Path(path)
        if path.suffix.lower() not in (".html", ".htm"):
            raise ValueError(f"step_through saves HTML pages; use a .html file name, not {path.name!r}")
        page = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                "<title>chainrule: backward, step by step</title>\n</head>\n<body>\n"
                f"{_player_html(self, 'steps')}\n</body>\n</html>\n")
        path.write_text(page, encoding="utf-8")
        return path


# The drawing keeps its natural size (Graphviz's 12 pt labels stay readable) inside a scrolling
# view, with zoom buttons; the caption has a fixed height, so the drawing does not jump up and
# down as captions of one and two lines alternate.
_PLAYER_CSS = """
#{id} {{ font-family: Helvetica, Arial, sans-serif; }}
#{id} .crs-frame {{ display: none; }}
#{id} .crs-frame.crs-on {{ display: block; }}
#{id} .crs-controls {{ display: flex; flex-wrap: wrap; gap: 0.6em; align-items: center; margin: 0.4em 0; }}
#{id} .crs-slider {{ flex: 0 1 20em; }}
#{id} pre.crs-caption {{ background: #f6f6f6; padding: 0.5em; margin: 0.3em 0; white-space: pre;
  overflow: auto; height: 5.2em; box-sizing: content-box; }}
#{id} .crs-note {{ color: #8a5300; }}
#{id} .crs-view {{ overflow: auto; max-height: 75vh; border: 1px solid #e0e0e0; }}
#{id} .crs-view svg {{ display: block; max-width: none; }}
"""

# Plain JavaScript, no libraries: one frame is shown at a time; buttons, slider and arrow keys move;
# zoom scales every frame's drawing from its natural size (100%).
_PLAYER_JS = """
(function () {{
  var root = document.getElementById("{id}");
  var frames = root.querySelectorAll(".crs-frame");
  var slider = root.querySelector(".crs-slider");
  var counter = root.querySelector(".crs-counter");
  var zoomText = root.querySelector(".crs-zoom");
  var at = 0, zoom = 1;
  var svgs = root.querySelectorAll(".crs-view svg");
  var natural = [];
  for (var i = 0; i < svgs.length; i++) {{
    natural.push([parseFloat(svgs[i].getAttribute("width")), parseFloat(svgs[i].getAttribute("height"))]);
  }}
  function scale(z) {{
    zoom = Math.max(0.1, Math.min(4, z));
    for (var i = 0; i < svgs.length; i++) {{
      svgs[i].setAttribute("width", natural[i][0] * zoom + "pt");
      svgs[i].setAttribute("height", natural[i][1] * zoom + "pt");
    }}
    zoomText.textContent = Math.round(zoom * 100) + "%";
    centre(frames[at]);
  }}
  function show(k) {{
    k = Math.max(0, Math.min(frames.length - 1, k));
    frames[at].classList.remove("crs-on");
    frames[k].classList.add("crs-on");
    at = k;
    slider.value = String(k);
    counter.textContent = "step " + (k + 1) + " of " + frames.length;
    centre(frames[k]);
  }}
  function centre(frame) {{
    // Scroll the drawing so that the node whose step this is sits in the middle of the view.
    var view = frame.querySelector(".crs-view"), node = frame.querySelector("g.node.current");
    if (!view || !node) return;
    var v = view.getBoundingClientRect(), n = node.getBoundingClientRect();
    view.scrollLeft += (n.left + n.width / 2) - (v.left + v.width / 2);
    view.scrollTop += (n.top + n.height / 2) - (v.top + v.height / 2);
  }}
  root.querySelector(".crs-prev").addEventListener("click", function () {{ show(at - 1); }});
  root.querySelector(".crs-next").addEventListener("click", function () {{ show(at + 1); }});
  root.querySelector(".crs-in").addEventListener("click", function () {{ scale(zoom * 1.25); }});
  root.querySelector(".crs-out").addEventListener("click", function () {{ scale(zoom / 1.25); }});
  root.querySelector(".crs-actual").addEventListener("click", function () {{ scale(1); }});
  slider.addEventListener("input", function () {{ show(parseInt(slider.value, 10)); }});
  centre(frames[0]);
  root.addEventListener("keydown", function (e) {{
    if (e.key === "ArrowLeft") {{ show(at - 1); e.preventDefault(); }}
    if (e.key === "ArrowRight") {{ show(at + 1); e.preventDefault(); }}
  }});
}})();
"""


def _player_html(steps: StepThrough, dom_id: str) -> str:
    n = len(steps.frames)
    parts = [f"<style>{_PLAYER_CSS.format(id=dom_id)}</style>",
             f'<div id="{dom_id}" class="chainrule-steps" tabindex="0">',
             '<div class="crs-controls">',
             '<button type="button" class="crs-prev">&#9664; prev</button>',
             f'<input type="range" class="crs-slider" min="0" max="{max(n - 1, 0)}" value="0" step="1" '
             'aria-label="step">',
             '<button type="button" class="crs-next">next &#9654;</button>',
             f'<span class="crs-counter">step 1 of {n}</span>',
             '<span class="crs-zoombox">zoom <button type="button" class="crs-out" aria-label="zoom out">&minus;</button>'
             '<span class="crs-zoom">100%</span>'
             '<button type="button" class="crs-in" aria-label="zoom in">+</button>'
             '<button type="button" class="crs-actual">100%</button></span>',
             "</div>"]
    if steps.note:
        parts.append(f'<p class="crs-note">{html.escape(steps.note)}</p>')
    for frame, body in zip(steps.frames, steps._frame_bodies()):
        on = " crs-on" if frame.step == 0 else ""
        parts.append(f'<div class="crs-frame{on}" data-step="{frame.step}" data-node="{html.escape(frame.name)}">'
                     f'<pre class="crs-caption">{html.escape(frame.caption)}</pre>'
                     f'<div class="crs-view">{body}</div></div>')
    parts.append("</div>")
    parts.append(f"<script>{_PLAYER_JS.format(id=dom_id)}</script>")
    return "\n".join(parts)


def step_through(root: Value, max_nodes: int | None = 50, max_frames: int | None = 60,
                 rankdir: str = "LR") -> StepThrough:
    """Keep one drawing per node that ``root.backward()`` visits, in that order.

    Like :func:`explain`, it shows a pass from zero gradients and leaves every ``.grad`` as it was.

    Each frame highlights the node whose local step ran (amber) and the inputs it just passed
    gradient to (green), with every gradient as it stands at that moment. Big graphs: at most
    ``max_nodes`` Values are drawn and ``max_frames`` frames kept (the first ones), with a note.
    The caps are lower than ``draw_dot``'s because every frame is a whole SVG (about 1.5 kB per
    drawn Value): 60 frames of 50 Values make a page of about 4 MB, 100 frames of 200 Values 30 MB.

    >>> x = Value(3.0, label="x"); y = x * x; y.label = "y"
    >>> steps = step_through(y)
    >>> len(steps.frames), steps.frames[0].name, steps.frames[0].caption.splitlines()[1]
    (2, 'y', 'x.grad += x.data * y.grad = 3 * 1 -> 3')
    >>> import tempfile
    >>> folder = tempfile.TemporaryDirectory()
    >>> steps.save(f"{folder.name}/steps.html").name
    'steps.html'
    >>> folder.cleanup()
    """
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be at least 1 (or None for no limit), got {max_frames!r}")
    order = topological_order(root)
    names = _names(order)
    known = {id(v): 0.0 for v in order}
    found = _walk(root, max_nodes)
    drawn = {id(node) for node in found.nodes}
    frames: list[Frame] = []

    def on_step(node: Value) -> None:
        step = len(frames)
        if max_frames is not None and step >= max_frames:
            return
        name = names[id(node)]
        caption = step_caption(node, names, known, first=step == 0)
        if id(node) not in drawn:
            caption.append(f"({name} is not in the drawing: only the {len(found.nodes)} nodes nearest the "
                           "output are drawn)")
        grads = {id(v): v.grad for v in found.nodes}
        source = _dot_source(found, rankdir, grads=grads, current=node, changed=node._prev, frame=f"f{step}_",
                             names=names)
        frames.append(Frame(step, node, name, "\n".join(caption), source))

    _fresh_pass(root, on_step)
    note = ""
    if max_frames is not None and len(order) > max_frames:
        note = (f"showing the first {max_frames} of {len(order)} steps of backward (max_frames={max_frames}); "
                "every gradient was still computed")
    return StepThrough(frames, note)
