"""The selected point's loss graph for the live view: built on Values, named by parameter, laid out once.

Every frame rebuilds the graph of one point's loss (``loss_fn([model(x)], [target])``) on the real
engine and runs ``backward()`` on it, so the numbers in the boxes are the engine's own. The
*structure* of that graph is the same for every point of a dataset (same ops in the same order), so
its drawing is made once per architecture: :func:`layout_source` writes the DOT text (Graphviz,
through :mod:`chainrule.render`, lays it out), and later frames send only the numbers, indexed by
each node's place in topological order.

Box labels name what a node is, counting from 0 as ``nn.named_parameters`` does: ``x0`` an input,
``L1.N2.w4`` the weight from neuron 4 of layer 0 into neuron 2 of layer 1, ``L1.N2.b`` its bias,
``L1.N2.sum`` its weighted sum, ``L1.N2.out`` its activation, ``loss`` the point's loss. Nets too large to read node by node are drawn per neuron:
one box per neuron with its sum and its activation (:data:`SCALAR_LIMIT`).

>>> import random; random.seed(0)
>>> from chainrule import MLP
>>> from chainrule.losses import mse_loss
>>> model = MLP(2, [2, 1], activation="tanh", output_activation="linear")
>>> g = point_graph(model, mse_loss, [0.5, -1.0], 1.0)
>>> g.root.label, [g.order[i].label for i in g.inputs], g.grouped
('loss', ['x0', 'x1'], False)
>>> sorted(label for label in g.labels if label.startswith("L0.N0"))
['L0.N0.b', 'L0.N0.out', 'L0.N0.sum', 'L0.N0.sum_to_w0', 'L0.N0.w0', 'L0.N0.w0*x0', 'L0.N0.w1', 'L0.N0.w1*x1']
>>> [p.label for p in model.parameters()][:3]      # the model's own labels are left as they were
['L0.N0.w0', 'L0.N0.w1', 'L0.N0.b']
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from ..engine import Value, topological_order
from ..nn import MLP
from ..viz import _dot_source, _record_text, _Traced, _walk
from ..text import number
from ..walkthrough import _names, step_caption

__all__ = ["SCALAR_LIMIT", "PointGraph", "layout_source", "point_graph", "walk_steps"]

# Up to this many scalar nodes the graph is drawn node by node (MLP(2, [4, 4, 1]) has about 110);
# above it, one box per neuron (MLP(2, [8, 8, 1]) has about 300).
SCALAR_LIMIT = 160


@dataclass
class PointGraph:
    """One point's loss graph. ``order`` is topological (root last); ``index`` maps a node to its place."""

    root: Value
    order: list[Value]
    index: dict
    inputs: list[int]                       # places of x1, x2, ...
    neurons: list[list[dict]]               # per layer, per neuron: places of its nodes
    names: dict[int, str]                   # id(node) -> the name captions use
    params: list[Value] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)   # every node's name, by place
    data: list[float] = field(default_factory=list)   # every node's data and grad after backward
    grad: list[float] = field(default_factory=list)
    grouped: bool = False

    @property
    def key(self) -> tuple:
        """What the drawing depends on: the ops in order and the labels (equal keys, equal drawings)."""
        return (len(self.order), tuple(v._rule for v in self.order), tuple(self.labels))

    def activations(self) -> list[list[float]]:
        """Each neuron's output for this point, layer by layer."""
        return [[self.data[n["out"]] for n in layer] for layer in self.neurons]


@contextmanager
def _borrowing(params: list[Value]) -> Iterator[None]:
    """Lend the parameters to a point's graph: their ``.grad`` (the last batch gradient) and labels
    are set aside, the gradient starts from 0, and both are put back afterwards, so drawing a point
    never changes what the optimizer uses or what the model's owner sees."""
    saved = [(p.grad, p.label) for p in params]
    try:
        for p in params:
            p.grad = 0.0
        yield
    finally:
        for p, (grad, label) in zip(params, saved):
            p.grad, p.label = grad, label


def point_graph(model: MLP, loss_fn, x, target, *, backward: bool = True) -> PointGraph:
    """Build the loss graph of one point, label it, and (by default) run ``backward()`` on it.

    The parameters are only borrowed (their batch gradient and labels are put back afterwards);
    the graph keeps every node's data and grad as they were right after its backward.
    """
    params = model.parameters()
    with _borrowing(params):
        inputs = [Value(float(v), label=f"x{i}") for i, v in enumerate(x)]
        h, outs = inputs, []
        for layer in model.layers:                     # MLP.__call__, one layer at a time
            h = layer(h)
            h = h if isinstance(h, list) else [h]
            outs.append(h)
        score = h[0] if len(h) == 1 else h
        root = loss_fn([score], [target])
        root.label = "loss"
        names_in = [v.label for v in inputs]
        neurons = []
        for li, (layer, layer_outs) in enumerate(zip(model.layers, outs)):
            neurons.append([_label_neuron(f"L{li}.N{ni}", neuron, out, names_in)
                            for ni, (neuron, out) in enumerate(zip(layer.neurons, layer_outs))])
            names_in = [f"L{li}.N{ni}.out" for ni in range(len(layer.neurons))]
        order = topological_order(root)
        for node in order:
            if not node._prev and not node.label:
                node.label = f"const {node.data:g}"    # a number the loss's formula brought in
        index = {node: i for i, node in enumerate(order)}
        for row in neurons:
            for n in row:
                n["sum"], n["out"] = index[n["sum"]], index[n["out"]]
                n["owned"] = [index[v] for v in n["owned"]]
        # Names for the chain-rule lines: the labels, else the expression (longer ones than explain's
        # default, since the labels here are long themselves).
        graph = PointGraph(root, order, index, [index[v] for v in inputs], neurons, _names(order, limit=44),
                           params, [v.label for v in order])
        graph.grouped = len(order) > SCALAR_LIMIT
        if backward:
            root.backward()
        graph.data, graph.grad = [v.data for v in order], [v.grad for v in order]
    return graph


def _label_neuron(prefix: str, neuron, out: Value, names_in: list[str]) -> dict:
    """Name a neuron's nodes by reading back the shape nn.Neuron builds: act(((b + w1*x1) + w2*x2) ...).

    Returns the neuron's nodes: its sum, its output and all the nodes it owns (for the per-neuron
    drawing). A shape other than expected leaves the unrecognised nodes unnamed, never misnamed.
    """
    for i, w in enumerate(neuron.w):           # nn's own names for them (nn.named_parameters)
        w.label = f"{prefix}.w{i}"
    neuron.b.label = f"{prefix}.b"
    linear = neuron.activation == "linear"
    total = out if linear else (out._prev[0] if out._prev else out)
    out.label = f"{prefix}.{'sum' if linear else 'out'}"
    total.label = f"{prefix}.sum"
    owned = [out, total, neuron.b, *neuron.w]
    node, k = total, len(neuron.w) - 1
    while k >= 0 and node._rule == "+" and len(node._prev) == 2:
        partial, product = node._prev
        if product._rule != "*" or product._prev[0] is not neuron.w[k]:
            break
        product.label = f"{prefix}.w{k}*{names_in[k]}"
        owned.append(product)
        if k > 0:
            partial.label = f"{prefix}.sum_to_w{k - 1}"
            owned.append(partial)
        node, k = partial, k - 1
    return {"sum": total, "out": out, "owned": owned}


def walk_steps(graph: PointGraph) -> list[dict]:
    """Backward on the point's graph, node by node: what each step changed and its chain-rule lines.

    Run on a graph built with ``backward=False``. Each step is ``{"node": place, "changes":
    [[place, grad], ...], "caption": text}`` in the order ``backward()`` visits the nodes (reverse
    topological order), the caption being what :func:`chainrule.explain` prints for that node.
    """
    order, index, names = graph.order, graph.index, graph.names
    steps: list[dict] = []

    def on_step(node: Value) -> None:
        first = not steps
        caption = step_caption(node, names, known, first)
        changes = [[index[child], child.grad] for child in node._prev]
        if first:
            changes.insert(0, [index[node], node.grad])
        steps.append({"node": index[node], "changes": changes, "caption": "\n".join(caption)})

    with _borrowing(graph.params):
        known = {id(v): 0.0 for v in order}      # backward starts from zero gradients
        graph.root.backward(on_step=on_step)
    return steps


def layout_source(graph: PointGraph, expand: tuple[int, int] | None = None) -> tuple[str, list[dict], list[str]]:
    """DOT text of the graph's drawing, its boxes, and the box of every node (by place).

    Each box is ``{"id": svg id, "slots": [[text prefix, place, "d" or "g"], ...], "topo": place}``:
    the page finds the box's text that starts with the prefix and writes the node's data ("d") or
    grad ("g") after it. The DOT text carries the current numbers, so the first picture is right.
    A grouped graph with ``expand=(layer, neuron)`` (counted from 0, as the labels are) draws that neuron's scalar nodes only,
    fed by its inputs' boxes.
    """
    if graph.grouped and expand is None:
        return _grouped_source(graph)
    if expand is None:
        found = _walk(graph.root, None)
    else:
        layer, neuron = expand
        owned = graph.neurons[layer][neuron]["owned"]
        nodes = [graph.order[i] for i in sorted(owned, reverse=True)]
        kept = set(nodes)
        feeding = [child for node in nodes for child in node._prev if child not in kept]
        nodes += list(dict.fromkeys(feeding))            # the inputs, once each, as leaves here
        kept = set(nodes)
        edges = [(child, node) for node in nodes if node in kept and node not in feeding
                 for child in node._prev if child in kept]
        found = _Traced(nodes, edges, len(nodes), [])
    with _borrowing(graph.params):
        for node, label in zip(graph.order, graph.labels):
            node.label = label
        grads = {id(node): g for node, g in zip(graph.order, graph.grad)}
        source = _dot_source(found, "LR", grads=grads)
    boxes, node_box = [], [""] * len(graph.order)
    for j, node in enumerate(found.nodes):
        place = graph.index[node]
        boxes.append({"id": f"v{j}", "slots": [["data ", place, "d"], ["grad ", place, "g"]], "topo": place})
        node_box[place] = f"v{j}"
    return source, boxes, node_box


def _grouped_source(graph: PointGraph) -> tuple[str, list[dict], list[str]]:
    order = graph.order
    lines = ["digraph chainrule {", '  graph [rankdir=LR, fontname="Helvetica", nodesep=0.12, ranksep=0.9];',
             '  node [shape=record, fontname="Helvetica", fontsize=12];', '  edge [color="#999999"];']
    boxes, node_box = [], ["loss"] * len(order)

    def box(box_id: str, title: str, fields: list[tuple[str, int, str]]) -> None:
        texts = [_record_text(title)] + [_record_text(prefix + number((graph.data if kind == "d"
                                                                          else graph.grad)[place]))
                                         for prefix, place, kind in fields]
        # No braces: with rankdir=LR the fields then stack top to bottom, one narrow box per neuron.
        lines.append(f'  {box_id} [id="{box_id}", label="{" | ".join(texts)}"];')
        boxes.append({"id": box_id, "slots": [list(f) for f in fields], "topo": fields[0][1]})

    for i, place in enumerate(graph.inputs):
        box(f"x{i}", f"x{i}", [("data ", place, "d"), ("grad ", place, "g")])
        node_box[place] = f"x{i}"
    previous = [f"x{i}" for i in range(len(graph.inputs))]
    for li, row in enumerate(graph.neurons):
        current = []
        for ni, n in enumerate(row):
            box_id = f"L{li}N{ni}"
            fields = [("sum ", n["sum"], "d"), ("sum.grad ", n["sum"], "g")]
            if n["out"] != n["sum"]:
                fields += [("out ", n["out"], "d"), ("out.grad ", n["out"], "g")]
            op = order[n["out"]]._rule if n["out"] != n["sum"] else "linear"
            box(box_id, f"L{li}.N{ni} {op}", fields)
            for place in n["owned"]:
                node_box[place] = box_id
            lines.extend(f"  {src} -> {box_id};" for src in previous)
            current.append(box_id)
        previous = current
    root = len(order) - 1
    box("loss", "loss of the point", [("data ", root, "d"), ("grad ", root, "g")])
    lines.extend(f"  {src} -> loss;" for src in previous)
    lines.append("}")
    return "\n".join(lines) + "\n", boxes, node_box
