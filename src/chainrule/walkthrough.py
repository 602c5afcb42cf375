"""Watching backward run: the chain-rule step of every node, as text and as a picture per step.

``explain(root)`` runs ``root.backward()`` and prints each local step with its numbers::

    n.grad += (1 - o.data**2) * o.grad = (1 - 0.7071**2) * 1.0000 -> 0.5000

``step_through(root)`` records one drawing per node backward visits (that node highlighted, the
gradients as they stand), playable in Jupyter or saved as a standalone HTML page.
"""

from __future__ import annotations

import html
import sys
import uuid
from pathlib import Path
from typing import NamedTuple, TextIO

from .engine import PRIMITIVES, SCALAR, Value, topological_order
from .render import RenderError, render
from .viz import _dot_source, _fallback_html, _strip_xml_prolog, _walk

__all__ = ["Frame", "StepThrough", "explain", "step_through"]

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

_NAME_LIMIT = 20  # longer expressions are called node<i>: a name must fit on a line


def _names(order: list[Value], limit: int = _NAME_LIMIT) -> dict[int, str]:
    """A readable name per node: its label, else its expression like ``(x1*w1)`` (up to ``limit``
    characters), else ``node7``."""
    names: dict[int, str] = {}
    for i, node in enumerate(order):
        if node.label:
            name = node.label
        elif not node._prev:
            name = f"node{i}"
        else:
            parts = [names[id(child)] for child in node._prev]
            op = node._op
            if node._rule in ("+", "*", "**") and len(parts) == 2:
                name = f"({parts[0]}{op}{parts[1]})"
            elif node._rule == "**k":
                name = f"({parts[0]}{op})"
            else:
                name = f"{op}({', '.join(parts)})"
            if len(name) > limit:
                name = f"node{i}"
        names[id(node)] = name
    return names


def _number(x: float) -> str:
    # -0.0 and -1e-9 both print as 0.0000: a minus sign on nothing only distracts.
    return f"{x if abs(x) >= 5e-5 else 0.0:.4f}"


def _constant(k: float) -> str:
    return f"{k:g}"


class _Line(NamedTuple):
    target: str      # "w1.grad"
    formula: str     # "x1.data * n.grad"
    numbers: str     # "2.0000 * 0.5000"
    term: float      # what was added
    total: float | None  # the gradient after adding, when something was there before


def _known_grads(order: list[Value]) -> dict[int, float]:
    """Every node's gradient as ``backward()`` starts: interior nodes reset to 0, leaves as they are."""
    return {id(v): (v.grad if not v._prev else 0.0) for v in order}


def _step_lines(node: Value, names: dict[int, str], known: dict[int, float]) -> list[_Line]:
    """The chain-rule lines of one node's local step; call after its ``_backward()`` ran.

    ``known`` holds each node's gradient before this step (from :func:`_known_grads`) and is
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
        row = tuple(f"{_number(s)} * {{g}}" for s in slopes)
    out = names[id(node)]
    symbols = {"out": f"{out}.data", "g": f"{out}.grad"}
    values = {"out": _number(node.data), "g": _number(node.grad)}
    for key, child in zip("ab", node._prev):
        symbols[key] = f"{names[id(child)]}.data"
        values[key] = _number(child.data)
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
        out.append(f"{root_name + '.grad':<{width_t}}  = 1.0000  (start: the output's gradient with respect to itself)")
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
    >>> order = topological_order(y); names = _names(order); known = _known_grads(order)
    >>> captions = []
    >>> y.backward(on_step=lambda node: captions.append(step_caption(node, names, known, node is y)))
    >>> captions[1]
    ['x is a leaf (an input, parameter or constant): nothing to pass back; x.grad = 6.0000']
    """
    name = names[id(node)]
    caption = _format(_step_lines(node, names, known), name if first else None)
    if not node._prev:
        caption.append(f"{name} is a leaf (an input, parameter or constant): nothing to pass back; "
                       f"{name}.grad = {_number(node.grad)}")
    return caption

def explain(root: Value, file: TextIO | None = None) -> str:
    """Run ``root.backward()`` and print each node's chain-rule step, in the order backward runs.

    Returns the printed text. Like ``backward()``, it adds into the leaves' gradients.

    >>> x1 = Value(2.0, label="x1"); w1 = Value(-3.0, label="w1")
    >>> n = x1 * w1; n.label = "n"
    >>> text = explain(n)
    n.grad   = 1.0000  (start: the output's gradient with respect to itself)
    x1.grad += w1.data * n.grad = -3.0000 * 1.0000 -> -3.0000
    w1.grad += x1.data * n.grad = 2.0000 * 1.0000  -> 2.0000
    >>> x1.grad, w1.grad
    (-3.0, 2.0)
    """
    order = topological_order(root)
    names = _names(order)
    known = _known_grads(order)
    lines: list[_Line] = []
    root.backward(on_step=lambda node: lines.extend(_step_lines(node, names, known)))
    text = "\n".join(_format(lines, names[id(root)])) + "\n"
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


_PLAYER_CSS = """
#{id} {{ font-family: Helvetica, Arial, sans-serif; }}
#{id} .crs-frame {{ display: none; }}
#{id} .crs-frame.crs-on {{ display: block; }}
#{id} .crs-controls {{ display: flex; gap: 0.6em; align-items: center; margin: 0.4em 0; }}
#{id} .crs-slider {{ flex: 0 1 20em; }}
#{id} pre.crs-caption {{ background: #f6f6f6; padding: 0.5em; margin: 0.3em 0; white-space: pre; overflow-x: auto; }}
#{id} .crs-note {{ color: #8a5300; }}
#{id} svg {{ max-width: 100%; height: auto; }}
"""

# Plain JavaScript, no libraries: one frame is shown at a time; buttons, slider and arrow keys move.
_PLAYER_JS = """
(function () {{
  var root = document.getElementById("{id}");
  var frames = root.querySelectorAll(".crs-frame");
  var slider = root.querySelector(".crs-slider");
  var counter = root.querySelector(".crs-counter");
  var at = 0;
  function show(k) {{
    k = Math.max(0, Math.min(frames.length - 1, k));
    frames[at].classList.remove("crs-on");
    frames[k].classList.add("crs-on");
    at = k;
    slider.value = String(k);
    counter.textContent = "step " + (k + 1) + " of " + frames.length;
  }}
  root.querySelector(".crs-prev").addEventListener("click", function () {{ show(at - 1); }});
  root.querySelector(".crs-next").addEventListener("click", function () {{ show(at + 1); }});
  slider.addEventListener("input", function () {{ show(parseInt(slider.value, 10)); }});
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
             "</div>"]
    if steps.note:
        parts.append(f'<p class="crs-note">{html.escape(steps.note)}</p>')
    for frame, body in zip(steps.frames, steps._frame_bodies()):
        on = " crs-on" if frame.step == 0 else ""
        parts.append(f'<div class="crs-frame{on}" data-step="{frame.step}" data-node="{html.escape(frame.name)}">'
                     f'<pre class="crs-caption">{html.escape(frame.caption)}</pre>{body}</div>')
    parts.append("</div>")
    parts.append(f"<script>{_PLAYER_JS.format(id=dom_id)}</script>")
    return "\n".join(parts)


def step_through(root: Value, max_nodes: int | None = 50, max_frames: int | None = 60,
                 rankdir: str = "LR") -> StepThrough:
    """Run ``root.backward()`` and keep one drawing per node it visits, in that order.

    Each frame highlights the node whose local step ran (amber) and the inputs it just passed
    gradient to (green), with every gradient as it stands at that moment. Big graphs: at most
    ``max_nodes`` Values are drawn and ``max_frames`` frames kept (the first ones), with a note.
    The caps are lower than ``draw_dot``'s because every frame is a whole SVG (about 1.5 kB per
    drawn Value): 60 frames of 50 Values make a page of about 4 MB, 100 frames of 200 Values 30 MB.

    >>> x = Value(3.0, label="x"); y = x * x; y.label = "y"
    >>> steps = step_through(y)
    >>> len(steps.frames), steps.frames[0].name, steps.frames[0].caption.splitlines()[1]
    (2, 'y', 'x.grad += x.data * y.grad = 3.0000 * 1.0000 -> 3.0000')
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
    known = _known_grads(order)
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
        source = _dot_source(found, rankdir, grads=grads, current=node, changed=node._prev, frame=f"f{step}_")
        frames.append(Frame(step, node, name, "\n".join(caption), source))

    root.backward(on_step=on_step)
    note = ""
    if max_frames is not None and len(order) > max_frames:
        note = (f"showing the first {max_frames} of {len(order)} steps of backward (max_frames={max_frames}); "
                "every gradient was still computed")
    return StepThrough(frames, note)
