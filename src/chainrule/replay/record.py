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

from ..engine import Value
from ._engine import enable_grad, rule_of, track_created
from .errors import NotReplayableError

__all__ = ["CONST", "INPUT", "LIVE", "OP", "Graph", "record"]

INPUT, LIVE, CONST, OP = 0, 1, 2, 3


class Graph:
    """A recording as flat lists, one entry per node in topological order.

    ``kids[i]`` are node numbers; ``prim[i]`` is the table row of an OP (None otherwise);
    ``arg[i]`` its constant parameter (the ``k`` of ``x ** k``); ``reach[i]`` is a bit set of the
    differentiable outputs that depend on node i (backward from output o runs only nodes with bit o).
    """

    def __init__(self):
        self.values: list[Value] = []
        self.kind: list[int] = []
        self.example: list[bool] = []
        self.kids: list[tuple] = []
        self.prim: list = []
        self.arg: list = []
        self.data: list[float] = []
        self.reach: list[int] = []
        self.roots: list[int] = []
        self.inputs: list[int] = []          # node number of each input Value, -1 if fn never used it
        self.n_diff = 0

    def __len__(self) -> int:
        return len(self.values)


def record(fn, make_args, n_diff: int | None, flatten) -> tuple:
    """Run ``fn(*args)`` with ``args, inputs = make_args()`` (made inside the tracking block, so the
    inputs count as made by the call) and return ``(out, tree, roots, Graph)``.

    ``flatten(out)`` gives ``(tree, roots)``; the first ``n_diff`` roots are differentiable
    (None: all of them), the rest are read forward only.
    """
    with track_created() as created, enable_grad():
        args, inputs = make_args()
        out = fn(*args)
    tree, roots = flatten(out)
    graph = _read(roots, inputs, created, len(roots) if n_diff is None else n_diff)
    return out, tree, roots, graph


def _read(roots: list, inputs: list, created: list, n_diff: int) -> Graph:
    # 1. Number every Value made during the call in creation order; a Value from before the call is
    #    numbered when first met, as a LIVE leaf. Values hash by identity.
    index: dict = {}
    kind: list[int] = []
    example: list[bool] = []
    kids: list[tuple] = []
    values: list = []
    input_ids = {id(v) for v in inputs}

    def add(v, k, ex, ks):
        index[v] = len(values)
        values.append(v)
        kind.append(k)
        example.append(ex)
        kids.append(ks)

    for v in created:
        if v in index:
            continue
        if id(v) in input_ids:
            add(v, INPUT, True, ())
            continue
        prev = v._prev
        if not prev:
            add(v, CONST, False, ())
            continue
        ks = []
        for c in prev:
            j = index.get(c)
            if j is None:
                j = len(values)
                add(c, LIVE, False, ())
            ks.append(j)
        ks = tuple(ks)
        if all(kind[j] == CONST for j in ks):
            add(v, CONST, False, ks)                    # an op on constants only: baked
        else:
            add(v, OP, any(example[j] for j in ks), ks)
    for r in roots:
        if r not in index:
            add(r, LIVE, False, ())
    _refuse_constants_from_data(values, kind, kids)

    # 2. Keep what the outputs depend on, and give each node the set of differentiable outputs
    #    that depend on it (one bit per output).
    n = len(values)
    reach = [0] * n
    root_ids = [index[r] for r in roots]
    for o, i in enumerate(root_ids):
        reach[i] |= (1 << o) if o < n_diff else (1 << n_diff)   # one shared bit: forward only
    for i in range(n - 1, -1, -1):
        r = reach[i]
        if r and kind[i] == OP:
            for c in kids[i]:
                reach[c] |= r
    keep = [i for i in range(n) if reach[i]]
    new = {old: k for k, old in enumerate(keep)}
    g = Graph()
    forward_only = 1 << n_diff
    for i in keep:
        v = values[i]
        g.values.append(v)
        g.kind.append(kind[i])
        g.example.append(example[i])
        g.kids.append(tuple(new[c] for c in kids[i]) if kind[i] == OP else ())
        g.reach.append(reach[i] & ~forward_only)
        g.data.append(v.data)
        g.arg.append(v._arg if kind[i] == OP else None)
        g.prim.append(_rule(v) if kind[i] == OP else None)
    g.roots = [new[i] for i in root_ids]
    g.inputs = [new.get(index.get(v, -1), -1) for v in inputs]
    g.n_diff = n_diff
    return g


def _rule(v: Value):
    try:
        return rule_of(v)
    except NotImplementedError as err:
        raise NotReplayableError(
            f"cannot replay op {v._op!r}: {err}. A replay applies table rules to arrays; register the op "
            f"with chainrule.primitive(name, forward, backward) and build it with that primitive") from None


def _refuse_constants_from_data(values: list, kind: list, kids: list) -> None:
    """A constant whose float is the very float object of an input or of an op's result was made
    from that node's ``.data`` (``Value(x.data)``, ``max`` over data): the replay would keep the
    recorded number for every call, so refuse it. (``Value(x.data)`` stores ``x.data`` itself.)

    Only floats an op computed or an argument supplied count: those are fresh objects. A live
    leaf's float may be a literal that the compiler shares with a literal in ``fn``, and an op
    that passes its input's float through (relu of a positive number) is not its origin.
    """
    fresh = {}
    for i, v in enumerate(values):
        if kind[i] == INPUT or (kind[i] == OP and all(values[c].data is not v.data for c in kids[i])):
            fresh[id(v.data)] = i
    for i, v in enumerate(values):
        if kind[i] == CONST and not kids[i] and id(v.data) in fresh:
            source = values[fresh[id(v.data)]]
            what = "an input" if kind[fresh[id(v.data)]] == INPUT else f"the result of op {source._op!r}"
            raise NotReplayableError(
                f"fn made a constant Value({v.data!r}) from the number of {what} while recording "
                f"(as Value(x.data) or max over .data does): a replay would keep that recorded number for "
                f"every call. Build it from Values so it stays in the graph (x itself, or relu for a max), "
                f"or call fn without compile")
