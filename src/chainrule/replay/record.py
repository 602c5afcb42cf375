"""Stage 1, record: run ``fn`` once on fresh Values and read the graph it built.

Every node of a recording is one of four kinds:

- ``INPUT``: a Value made from the call's float arguments; later calls feed new numbers into it.
- ``LIVE``: a Value that existed before the call: a parameter, or a node made earlier by an op
  (``w3 = w * 3``). Its ``.data`` is read at every replay and it receives a gradient (which, for a
  node made by an op, continues into the graph below it as eager backward would).
- ``CONST``: a Value made during the call from no input and no live Value (``Value(2.0)``, or an
  op on such constants): baked in.
- ``OP``: made during the call by a primitive, from at least one input or live Value.

A node is *per example* when it depends on an input, and *shared* otherwise (a live Value, a
constant, an L2 penalty over the parameters): a batched replay computes shared nodes once.

What is made during the call is told apart from what existed before by the engine's
``track_created()``, which lists every Value the current thread makes inside the block. Creation
order is a topological order (a node is made after its inputs), so no graph walk is needed.
"""

from __future__ import annotations

import operator
from itertools import chain

import numpy as np

from ..engine import Value, collector_paused, enable_grad, rule_of, track_created
from .errors import NotReplayableError

__all__ = ["CONST", "INPUT", "LIVE", "OP", "Graph", "record"]

INPUT, LIVE, CONST, OP = 0, 1, 2, 3

# Table rows whose result is always a new float object (Python's arithmetic and math functions).
_FRESH = frozenset({"+", "*", "/", "**", "**k", "exp", "log", "sqrt", "tanh", "sigmoid"})


class Graph:
    """A recording as flat lists, one entry per node in topological order.

    ``kids[i]`` are node numbers; ``prim[i]`` is the table row of an OP (None otherwise; the
    constant of ``x ** k`` is ``values[i]._arg``); ``reach[i]`` is a bit set of the
    differentiable outputs that depend on node i (backward from output o runs only nodes with bit o).
    """

    def __init__(self):
        self.values: list[Value] = []
        self.kind: list[int] = []
        self.example: list[bool] = []
        self.kids: list[tuple] = []
        self.prim: list = []
        self.data: list[float] = []
        self.reach: list[int] = []
        self.fanout: list[int] = []          # uses of each node by ops, plus one per output it is
        self.roots: list[int] = []
        self.inputs: list[int] = []          # node number of each input Value, -1 if fn never used it
        self.position: dict = {}             # Value -> node number
        self.n_diff = 0

    def __len__(self) -> int:
        return len(self.values)


def record(fn, make_args, n_diff: int | None, flatten) -> tuple:
    """Run ``fn(*args)`` with ``args, inputs = make_args()`` (made inside the tracking block, so the
    inputs count as made by the call) and return ``(out, tree, roots, Graph)``.

    ``flatten(out)`` gives ``(tree, roots)``; the first ``n_diff`` roots are differentiable
    (None: all of them), the rest are read forward only.
    """
    with collector_paused():
        with track_created() as created, enable_grad():
            args, inputs = make_args()
            out = fn(*args)
        tree, roots = flatten(out)
        graph = _read(roots, inputs, created, len(roots) if n_diff is None else n_diff)
    return out, tree, roots, graph


def _read(roots: list, inputs: list, created: list, n_diff: int) -> Graph:
    # 1. Number every Value made during the call in creation order; a Value from before the call is
    #    numbered when first met, as a LIVE leaf. Values hash by identity. (This loop runs once per
    #    node, so it is written for speed: two-input ops, the common case, take the short path.)
    index: dict = {}
    kind: list[int] = []
    example: list[bool] = []
    kids: list[tuple] = []
    values: list = []
    input_ids = {id(v) for v in inputs}
    constants: list[int] = []                  # the Value(...) leaves made during the call
    get = index.get
    add_kind, add_example, add_kids, add_value = kind.append, example.append, kids.append, values.append

    def live(c) -> int:
        j = get(c)
        if j is None:
            j = index[c] = len(values)
            add_value(c)
            add_kind(LIVE)
            add_example(False)
            add_kids(())
        return j

    for v in created:
        prev = v._prev
        if not prev:
            index[v] = len(values)
            add_value(v)
            is_input = id(v) in input_ids
            if not is_input:
                constants.append(len(values) - 1)
            add_kind(INPUT if is_input else CONST)
            add_example(is_input)
            add_kids(())
            continue
        if len(prev) == 2:
            c0, c1 = prev
            a = get(c0)
            if a is None:
                a = live(c0)
            b = get(c1)
            if b is None:
                b = live(c1)
            ex = example[a] or example[b]
            const = kind[a] == CONST and kind[b] == CONST
            ks = () if const else (a, b)
        else:
            ks = tuple(map(live, prev))
            ex = any(example[j] for j in ks)
            const = all(kind[j] == CONST for j in ks)
            if const:
                ks = ()
        index[v] = len(values)
        add_value(v)
        add_kind(CONST if const else OP)      # an op on constants only is baked
        add_example(ex)
        add_kids(ks)
    for r in roots:
        live(r)
    _refuse_constants_from_data(values, kind, constants)

    # 2. Keep what the outputs depend on, and give each node the set of differentiable outputs
    #    that depend on it (one bit per output; one more bit marks what is read forward only).
    #    When every op but the outputs feeds another op, every op reaches an output; with one
    #    differentiable output and no op unused but it, that is the whole answer.
    n = len(values)
    root_ids = [index[r] for r in roots]
    fanout = _fanout(kids, n)
    # Leaves nothing uses (an argument fn ignores) cost nothing; only unused ops need pruning.
    unused = set(np.flatnonzero((fanout == 0) & (np.array(kind, dtype=np.int8) == OP)).tolist())
    g = Graph()
    new = None
    if n_diff <= 1 and unused <= ({root_ids[0]} if n_diff else set(root_ids)):
        reach = [n_diff] * n
    else:
        reach = [0] * n
        forward_only = 1 << n_diff
        for o, i in enumerate(root_ids):
            reach[i] |= (1 << o) if o < n_diff else forward_only
        for i in range(n - 1, -1, -1):
            r = reach[i]
            if r:
                for c in kids[i]:
                    reach[c] |= r
        if not all(reach):
            keep = [i for i in range(n) if reach[i]]
            new = {old: k for k, old in enumerate(keep)}
            values = [values[i] for i in keep]
            kind = [kind[i] for i in keep]
            example = [example[i] for i in keep]
            kids = [tuple(new[c] for c in kids[i]) for i in keep]
            reach = [reach[i] for i in keep]
            root_ids = [new[i] for i in root_ids]
            fanout = _fanout(kids, len(values))
        reach = [r & ~forward_only for r in reach]
    g.values, g.kind, g.example, g.kids, g.reach = values, kind, example, kids, reach
    g.fanout = (fanout + np.bincount(np.asarray(root_ids, dtype=np.intp), minlength=len(values))).tolist()
    g.data = [v.data for v in values]
    try:
        g.prim = [rule_of(v) if k == OP else None for v, k in zip(values, kind)]
    except NotImplementedError:
        for v, k in zip(values, kind):
            if k == OP:
                _rule(v)                         # raises the named error for the first such node
        raise
    g.roots = root_ids
    g.position = index if new is None else {v: i for i, v in enumerate(values)}
    positions = [index.get(v, -1) for v in inputs]
    g.inputs = positions if new is None else [new.get(i, -1) for i in positions]
    g.n_diff = n_diff
    return g


def _fanout(kids: list, n: int) -> np.ndarray:
    """How many ops use each node as an input."""
    uses = np.fromiter(chain.from_iterable(kids), dtype=np.intp)
    return np.bincount(uses, minlength=n)


def _rule(v: Value):
    try:
        return rule_of(v)
    except NotImplementedError as err:
        raise NotReplayableError(
            f"cannot replay op {v._op!r}: {err}. A replay applies table rules to arrays; register the op "
            f"with chainrule.primitive(name, forward, backward) and build it with that primitive") from None


_data = operator.attrgetter("data")


def _refuse_constants_from_data(values: list, kind: list, leaves: list[int]) -> None:
    """A constant whose float is the very float object of an input or of an op's result was made
    from that node's ``.data`` (``Value(x.data)``, ``max`` over data): the replay would keep the
    recorded number for every call, so refuse it. (``Value(x.data)`` stores ``x.data`` itself.)

    Only floats that are fresh objects count: an argument's, and the result of arithmetic (the
    ops in ``_FRESH``). A live leaf's float may be a literal that the compiler shares with a
    literal in ``fn``; relu, a comparison or a selection may return its input's float or a
    literal of the module that defines it.
    """
    if not leaves:
        return
    # A constant's float object held by no other node needs no closer look (a C-level pass).
    ids = np.fromiter(map(id, map(_data, values)), dtype=np.int64, count=len(values))
    ids.sort()
    own = ids[np.searchsorted(ids, [id(values[i].data) for i in leaves])]
    shared = np.searchsorted(ids, own, side="right") - np.searchsorted(ids, own, side="left") > 1
    if not shared.any():
        return
    constants = {id(values[i].data): values[i] for i, s in zip(leaves, shared.tolist()) if s}
    for v, k in zip(values, kind):
        c = constants.get(id(v.data)) if k == INPUT or k == OP else None
        if c is None or c is v or (k == OP and v._rule not in _FRESH):
            continue
        what = "an input" if k == INPUT else f"the result of op {v._op!r}"
        raise NotReplayableError(
            f"fn made a constant Value({c.data!r}) from the number of {what} while recording "
            f"(as Value(x.data) or max over .data does): a replay would keep that recorded number for "
            f"every call. Build it from Values so it stays in the graph (x itself, or relu for a max), "
            f"or call fn without compile")
