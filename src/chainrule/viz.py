"""Drawing the computation graph, as in the lecture: one box per Value, one small node per op.

``draw_dot(root)`` returns a :class:`Graph`: its ``.source`` is Graphviz DOT text, and it shows
itself as SVG in Jupyter, rendered by :mod:`chainrule.render` (system Graphviz, else the bundled
WebAssembly Graphviz). When nothing can render, a notebook shows the DOT text and a one-line
install hint instead of an error.

Labels are user text, so they are escaped for DOT here; Graphviz escapes them again for SVG.
"""

from __future__ import annotations

import html
import re
from collections import deque
from pathlib import Path
from typing import Iterable

from .engine import Value, topological_order
from .render import RenderError, render
from .text import number

__all__ = ["Graph", "draw_dot", "neuron_groups", "trace"]


class _Traced:
    """What a bounded breadth-first walk from the root found."""

    def __init__(self, nodes: list[Value], edges: list[tuple[Value, Value]], total: int,
                 cut: list[Value]):
        self.nodes = nodes        # kept Values, nearest the root first
        self.edges = edges        # (input, result) pairs between kept Values
        self.total = total        # every Value the root depends on, kept or not
        self.cut = cut            # kept Values with at least one input left out

    @property
    def omitted(self) -> int:
        return self.total - len(self.nodes)


def _walk(root: Value, max_nodes: int | None) -> _Traced:
    if max_nodes is not None and max_nodes < 1:
        raise ValueError(f"max_nodes must be at least 1 (or None for no limit), got {max_nodes!r}")
    # Breadth-first, so a cap keeps the nodes nearest the root: the output end is what a reader
    # looks at first. A queue instead of recursion, so depth is unlimited.
    seen = {id(root)}
    kept: list[Value] = [root]
    kept_ids = {id(root)}
    edges: list[tuple[Value, Value]] = []
    cut: list[Value] = []
    total = 1
    queue = deque([root])
    while queue:
        node = queue.popleft()
        node_kept = id(node) in kept_ids
        node_cut = False
        for child in node._prev:
            if id(child) not in seen:
                seen.add(id(child))
                total += 1
                queue.append(child)
                if node_kept and (max_nodes is None or len(kept) < max_nodes):
                    kept.append(child)
                    kept_ids.add(id(child))
            if node_kept:
                if id(child) in kept_ids:
                    edges.append((child, node))
                else:
                    node_cut = True
        if node_cut:
            cut.append(node)
    return _Traced(kept, edges, total, cut)


def trace(root: Value, max_nodes: int | None = None) -> tuple[list[Value], list[tuple[Value, Value]]]:
    """All Values ``root`` depends on and the ``(input, result)`` edges between them.

    Nodes come nearest-the-root first; ``max_nodes`` keeps only that many (and the edges between
    them). The walk uses a queue, not recursion, so any depth works.

    >>> a = Value(2.0, label="a"); b = Value(-3.0, label="b"); c = a * b + a
    >>> nodes, edges = trace(c)
    >>> len(nodes), len(edges)
    (4, 4)
    >>> [v.label for v in trace(c, max_nodes=2)[0]]
    ['', '']
    """
    found = _walk(root, max_nodes)
    return found.nodes, found.edges


# --- DOT text ------------------------------------------------------------------------------------

def _dot_text(text: str) -> str:
    """User text for inside a double-quoted DOT string, shown literally."""
    out = []
    for ch in str(text):
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "&":
            # Graphviz turns "&lt;" in a label into "<"; "&amp;" keeps the ampersand literal.
            out.append("&amp;")
        elif ch == "\n":
            out.append("\\n")
        elif ch < " " or ch == "\x7f" or "\ud800" <= ch <= "\udfff":
            # Control characters, and lone surrogates (which no file can encode), show as U+FFFD.
            out.append("\ufffd")
        else:
            out.append(ch)
    return "".join(out)


_RECORD_SPECIAL = set("{}|<>")


def _record_text(text: str) -> str:
    """User text for one field of a record label: the record syntax characters are escaped too."""
    return "".join("\\" + ch if ch in _RECORD_SPECIAL else ch for ch in _dot_text(text))


# Fill colours of the step-through frames (explain.py): the node whose local step just ran, and
# the inputs whose gradients it just changed.
CURRENT_FILL = "#ffd54f"
CHANGED_FILL = "#c8e6c9"


_PLACE = re.compile(r"(L\d+\.N\d+)\.(?:w\d+|b)")     # a parameter named by place (nn.Module.named_parameters)
_ACTIVATION_OPS = ("tanh", "relu", "sigmoid")


def neuron_groups(nodes: list[Value]) -> dict[int, str]:
    """``{id(node): "L0.N2"}`` for the nodes that make up each neuron of an MLP: its parameters
    (labelled by place), its products ``w*x``, the sums that add them to its bias, and its
    activation. Everything else (inputs, losses, sums over examples) belongs to no neuron.

    >>> import random; random.seed(0)
    >>> from chainrule import MLP
    >>> out = MLP(1, [1])([2.0])             # tanh(b + w0*2)
    >>> sorted(set(neuron_groups(topological_order(out)).values()))
    ['L0.N0']
    """
    owner: dict[int, str] = {}
    for node in nodes:
        if not node._prev:
            match = _PLACE.fullmatch(node.label)
            if match:
                owner[id(node)] = match.group(1)
            continue
        kids = [owner.get(id(child)) for child in node._prev]
        direct = [owner[id(c)] for c in node._prev if not c._prev and id(c) in owner]   # parameters
        terms = [owner[id(c)] for c in node._prev if c._rule == "*" and id(c) in owner]  # its w*x
        if node._rule == "*" and len(direct) == 1:
            owner[id(node)] = direct[0]                  # w * x
        elif node._rule == "+" and kids[0] and len(set(kids)) == 1 and (direct or terms):
            owner[id(node)] = kids[0]                    # b + w*x, then + w*x ...
        elif node._rule in _ACTIVATION_OPS and kids[0] and node._prev[0]._rule == "+":
            owner[id(node)] = kids[0]                    # the neuron's activation
    return owner


def _dot_source(found: _Traced, rankdir: str = "LR", *, grads: dict[int, float] | None = None,
                current: Value | None = None, changed: Iterable[Value] = (), frame: str = "",
                names: dict[int, str] | None = None, group: bool = True) -> str:
    """DOT text for a traced graph; ``grads`` (by ``id``) overrides the shown gradients, ``names``
    gives unlabelled nodes a name to show, and ``group`` boxes each neuron's nodes together."""
    if rankdir not in ("LR", "RL", "TB", "BT"):
        raise ValueError(f"rankdir must be one of LR, RL, TB, BT, got {rankdir!r}")
    ids = {id(node): f"{frame}v{i}" for i, node in enumerate(found.nodes)}
    changed_ids = {id(v) for v in changed}
    lines = ["digraph chainrule {",
             f'  graph [rankdir={rankdir}, fontname="Helvetica"];',
             '  node [fontname="Helvetica", fontsize=12];',
             '  edge [color="#555555"];']
    for node in found.nodes:
        uid = ids[id(node)]
        grad = node.grad if grads is None else grads.get(id(node), node.grad)
        shown = node.label or (names or {}).get(id(node), "")
        label = f"{{ {_record_text(shown)} | data {number(node.data)} | grad {number(grad)} }}"
        style = ""
        if current is not None and node is current:
            style = f', style=filled, fillcolor="{CURRENT_FILL}", class="current", penwidth=2'
        elif id(node) in changed_ids:
            style = f', style=filled, fillcolor="{CHANGED_FILL}", class="changed"'
        lines.append(f'  {uid} [shape=record, id="{uid}", label="{label}"{style}];')
        if node._prev:
            lines.append(f'  {uid}op [label="{_dot_text(node._op)}", id="{uid}op", width=0.3, height=0.3, '
                         'margin=0.02, fontsize=11];')
            lines.append(f"  {uid}op -> {uid};")
    for child, parent in found.edges:
        lines.append(f"  {ids[id(child)]} -> {ids[id(parent)]}op;")
    if group:
        members: dict[str, list[str]] = {}
        owner = neuron_groups(topological_order(found.nodes[0]))
        for node in found.nodes:
            place = owner.get(id(node))
            if place is not None:
                members.setdefault(place, []).append(ids[id(node)] + (f"; {ids[id(node)]}op" if node._prev else ""))
        for k, (place, items) in enumerate(sorted(members.items())):
            # A cluster per neuron: the drawing of an MLP reads neuron by neuron.
            lines.append(f'  subgraph cluster_{frame}n{k} {{ label="{place}"; style="rounded,dashed"; '
                         f'color="#9e9e9e"; fontcolor="#616161"; {"; ".join(items)}; }}')
    if found.omitted:
        # Said twice: a comment for whoever reads the DOT text, a note node for whoever sees the picture.
        note = (f"{found.omitted} more node{'s' * (found.omitted != 1)} not drawn: showing the "
                f"{len(found.nodes)} nearest the output (max_nodes={len(found.nodes)})")
        lines.append(f"  // {note}")
        lines.append(f'  {frame}omitted [shape=note, style=filled, fillcolor="#eeeeee", id="{frame}omitted", '
                     f'label="{note}\\ndashed arrows: inputs left out"];')
        for node in found.cut:
            target = ids[id(node)] + ("op" if node._prev else "")
            lines.append(f"  {frame}omitted -> {target} [style=dashed, color=\"#999999\"];")
    lines.append("}")
    return "\n".join(lines) + "\n"


# --- the Graph object ----------------------------------------------------------------------------

def _strip_xml_prolog(svg: str) -> str:
    """An SVG document's ``<svg>`` element alone, for putting inside HTML."""
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg


_FALLBACK_SOURCE_LIMIT = 4000   # characters of DOT text a failed drawing still shows in a notebook


def _fallback_text(source: str, problem: str) -> str:
    """One line saying what went wrong and what to do; the DOT text only when it is short."""
    line = f"could not draw this graph: {problem}"
    if len(source) > _FALLBACK_SOURCE_LIMIT:
        return f"{line} (its {len(source):,} characters of DOT text are in .source; .save('graph.dot') writes them)"
    return f"{source}\n# {line}"


def _fallback_html(source: str, problem: str) -> str:
    shown = "" if len(source) > _FALLBACK_SOURCE_LIMIT else f"<pre>{html.escape(source)}</pre>"
    extra = (f" (its {len(source):,} characters of DOT text are in <code>.source</code>; "
             "<code>.save('graph.dot')</code> writes them)" if not shown else "")
    return f"<p><b>chainrule could not draw this graph</b>: {html.escape(problem)}{extra}</p>{shown}"


class Graph:
    """A drawing of a computation graph: DOT text that renders itself.

    ``.source`` is the DOT text, ``.svg()`` the picture, ``.save(path)`` writes ``.svg``, ``.png``
    (needs a renderer that makes PNG) or ``.dot``/``.gv``. In Jupyter it displays as SVG; when
    nothing can render, it displays the DOT text and a one-line hint instead of raising.
    """

    def __init__(self, source: str, format: str = "svg", *, nodes: int = 0, omitted: int = 0):
        if format not in ("svg", "png"):
            raise ValueError(f"format must be 'svg' or 'png', got {format!r}")
        self.source = source
        self.format = format
        self.nodes = nodes
        self.omitted = omitted
        self._svg: str | None = None

    def __repr__(self) -> str:
        more = f", {self.omitted} not drawn" if self.omitted else ""
        return f"<chainrule Graph: {self.nodes} values{more}>"

    def svg(self, timeout: float | None = None) -> str:
        """The drawing as SVG text (rendered once, then remembered). ``timeout``: seconds allowed
        (default ``chainrule.render.RENDER_TIMEOUT_S``), after which ``RenderError`` says what to do."""
        if self._svg is None:
            self._svg = render(self.source, "svg", timeout=timeout).decode("utf-8")
        return self._svg

    def render(self, format: str | None = None, timeout: float | None = None) -> bytes:
        """The drawing as bytes in ``format`` (default: the format given to ``draw_dot``)."""
        fmt = format or self.format
        return self.svg(timeout).encode("utf-8") if fmt == "svg" else render(self.source, fmt, timeout=timeout)

    def save(self, path, format: str | None = None, timeout: float | None = None) -> Path:
        """Write the drawing to ``path``; the format comes from the suffix unless given.

        Every failure to draw is a ``RenderError`` with one line saying what to do: a graph too
        deep for the bundled renderer (about 6,000 Values in a chain, docs/rendering.md), or one
        that takes longer than ``timeout`` seconds to lay out."""
        path = Path(path)
        fmt = (format or path.suffix.lstrip(".")).lower()
        if fmt in ("dot", "gv"):
            path.write_text(self.source, encoding="utf-8")
            return path
        if fmt not in ("svg", "png"):
            raise ValueError(f"cannot save a graph as {fmt!r}: use a .svg, .png, .dot or .gv file name")
        data = self.render(fmt, timeout)
        path.write_bytes(data)
        return path

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        # A notebook must never see an exception from here: every failure becomes the DOT text
        # with one line saying what went wrong and what to install.
        try:
            if self.format == "png":
                import base64
                try:
                    return {"image/png": base64.b64encode(self.render("png")).decode("ascii"),
                            "text/plain": repr(self)}
                except RenderError:
                    pass
            return {"image/svg+xml": self.svg(), "text/plain": repr(self)}
        except Exception as exc:  # noqa: BLE001 -- display must not raise, whatever went wrong
            problem = str(exc) or type(exc).__name__
            return {"text/plain": _fallback_text(self.source, problem),
                    "text/html": _fallback_html(self.source, problem)}


def draw_dot(root: Value, rankdir: str = "LR", format: str = "svg", max_nodes: int | None = 200) -> Graph:
    """Draw ``root``'s graph: a box per Value (label | data | grad), a small node per op.

    At most ``max_nodes`` Values are drawn, those nearest the root, with a note saying how many
    were left out (``max_nodes=None`` draws everything).

    >>> x = Value(2.0, label="x"); y = x * x; y.label = "y"; y.backward()
    >>> g = draw_dot(y)
    >>> "{ y | data 4.0000 | grad 1.0000 }" in g.source
    True
    >>> "<svg" in g._repr_mimebundle_()["image/svg+xml"]
    True
    """
    found = _walk(root, max_nodes)
    return Graph(_dot_source(found, rankdir), format, nodes=len(found.nodes), omitted=found.omitted)
