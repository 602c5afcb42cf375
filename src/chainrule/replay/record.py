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

A recording of a wide layer has hundreds of thousands of nodes, so it is read with numpy, not node
by node: each node's rule and inputs are read with C-level ``map`` calls, inputs are matched to
nodes by object identity (a sorted array of ``id``s), and the graph is kept as flat arrays. One
Python loop remains, the one that must run in topological order (which nodes depend on an input),
and it does one integer ``or`` per node.
"""

from __future__ import annotations

import operator
from functools import reduce
from itertools import repeat

import numpy as np

from ..engine import Value, collector_paused, enable_grad, rule_of, track_created
from ..primitives import Primitive
from .errors import NotReplayableError

__all__ = ["CONST", "INPUT", "LIVE", "OP", "Graph", "Ids", "record"]

INPUT, LIVE, CONST, OP = 0, 1, 2, 3

# Table rows whose result is always a new float object (Python's arithmetic and math functions).
_FRESH = frozenset({"+", "*", "/", "**", "**k", "exp", "log", "sqrt", "tanh", "sigmoid"})

_node_of, _a_of, _b_of = operator.attrgetter("_node"), operator.attrgetter("_a"), operator.attrgetter("_b")
_data = operator.attrgetter("data")

# What a node depends on, as two bits: on an input (it is per example) and on anything not baked.
_EXAMPLE, _MOVES = 1, 2


class Graph:
    """A recording as flat arrays, one entry per node in topological order (live Values first).

    - ``values``: the Values; ``kind``: INPUT, LIVE, CONST or OP; ``example``: per example or not.
    - ``ptr``, ``kids``: each node's inputs, node ``i``'s being ``kids[ptr[i]:ptr[i+1]]`` (a CSR
      list: a baked constant has none). ``k0``, ``k1``: the first and second input, -1 if none.
    - ``rule``: an OP's row of the table as a number into ``rules`` (-1 for other nodes);
      ``arg``: the constant of an ``x ** k`` node.
    - ``reach[i]``: a bit set of the differentiable outputs that depend on node i (backward from
      output o runs only nodes with bit o). ``fanout``: uses of each node by ops, plus one per output.
    - ``roots``: the outputs' nodes; ``inputs``: each input Value's node, -1 if fn never used it.
    """

    def __init__(self):
        self.values: list[Value] = []
        self.kind = self.example = self.ptr = self.kids = self.k0 = self.k1 = None
        self.rule = self.arg = self.data = self.fanout = None
        self.rules: list[Primitive] = []
        self.reach: list[int] = []
        self.roots: list[int] = []
        self.inputs: list[int] = []
        self.n_diff = self.n_live = 0

    def __len__(self) -> int:
        return len(self.values)

    def find_live(self, values: list) -> np.ndarray:
        """The node of each of ``values`` among the live ones (-1 for a Value not live here)."""
        return Ids(self.values[:self.n_live]).find(values)


class Ids:
    """Node numbers of Values, by identity: a sorted array of ``id``s searched with numpy."""

    def __init__(self, values: list):
        ids = np.fromiter(map(id, values), dtype=np.int64, count=len(values))
        self.order = np.argsort(ids, kind="stable")
        self.sorted = ids[self.order]

    def find_ids(self, ids: np.ndarray) -> np.ndarray:
        if not len(self.sorted) or not len(ids):
            return np.full(len(ids), -1, dtype=np.intp)
        # Searched in sorted order: Values made one after another mostly lie at increasing
        # addresses, so both sorts are cheap and the search walks memory forward, not at random.
        by_id = np.argsort(ids, kind="stable")
        wanted = ids[by_id]
        j = np.minimum(np.searchsorted(self.sorted, wanted), len(self.sorted) - 1)
        found = np.empty(len(ids), dtype=np.intp)
        found[by_id] = np.where(self.sorted[j] == wanted, self.order[j], -1)
        return found

    def find(self, values: list) -> np.ndarray:
        return self.find_ids(np.fromiter(map(id, values), dtype=np.int64, count=len(values)))


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
        _refuse_other_threads(graph, created.elsewhere)
    return out, tree, roots, graph


def _refuse_other_threads(g: Graph, elsewhere: list[int]) -> None:
    """A Value that another thread made during the call (``pool.map(lambda x: x * w, xs)`` inside
    fn) looks like one that existed before it: the replay would read its recorded number at every
    call instead of computing it. Refuse it, naming what made it."""
    if not elsewhere:
        return
    live_ids = np.fromiter(map(id, g.values[:g.n_live]), dtype=np.int64, count=g.n_live)   # live ones first
    hits = np.flatnonzero(np.isin(live_ids, np.array(elsewhere, dtype=np.int64)))
    if len(hits):
        v = g.values[int(hits[0])]
        what = f"made by op {v._op!r}" if v._prev else "a leaf"
        raise NotReplayableError(
            f"fn used a Value ({what}) that another thread made while compile recorded fn: a recording "
            f"sees only the ops of the thread that calls fn, so a replay would keep that Value's recorded "
            f"number. Make fn's Values in the calling thread (worker threads may compute plain floats), "
            f"or call fn without compile")


def _read(roots: list, inputs: list, created: list, n_diff: int) -> Graph:
    m = len(created)
    # 1. Each made node's rule, numbered. A table row keeps one or two inputs in slots (kinds 1
    #    and 2; kind 3 is one input and a constant); any other node keeps a tuple, or nothing.
    nodes = list(map(_node_of, created))
    rule_number = {r: c for c, r in enumerate(dict.fromkeys(nodes))}      # distinct rules, first seen first
    table = list(rule_number)
    code = np.fromiter(map(rule_number.__getitem__, nodes), dtype=np.intp, count=m)
    slots = np.array([0 if r is None else -1 if not isinstance(r, Primitive) or r.kind == 0
                      else 1 if r.kind == 3 else r.kind for r in table], dtype=np.intp)[code]
    n_kids = np.maximum(slots, 0)
    other = np.flatnonzero(slots < 0).tolist()
    other_kids = [tuple(created[i]._prev) for i in other]
    n_kids[other] = [len(k) for k in other_kids]

    # 2. Match each input of a made node to the node that made it, by identity (the ``id``s of
    #    the slots' objects, read in C-level passes); an input made before the call is a live
    #    Value (-1 for now). Edges are laid out by consumer, then slot.
    made = Ids(created)
    made_ptr = np.concatenate([[0], np.cumsum(n_kids)]).astype(np.intp)
    one, two = np.flatnonzero(slots >= 1), np.flatnonzero(slots == 2)
    kid_ids = np.empty(int(made_ptr[-1]), dtype=np.int64)
    kid_ids[made_ptr[one]] = np.fromiter(map(id, map(_a_of, created)), dtype=np.int64, count=m)[one]
    kid_ids[made_ptr[two] + 1] = np.fromiter(map(id, map(_b_of, created)), dtype=np.int64, count=m)[two]
    by_id = {id(r): r for r in roots}                # Values met outside the two slots
    for i, kids_here in zip(other, other_kids):
        kid_ids[made_ptr[i]:made_ptr[i + 1]] = [id(c) for c in kids_here]
        by_id.update((id(c), c) for c in kids_here)
    root_ids = np.fromiter(map(id, roots), dtype=np.int64, count=len(roots))
    kid_at, root_at = made.find_ids(kid_ids), made.find_ids(root_ids)

    # 3. Number the live Values first, in the order they are first used (roots last), then the
    #    made nodes in creation order: every node comes after its inputs.
    outside_edges = np.flatnonzero(kid_at < 0)
    outside = np.concatenate([kid_ids[outside_edges], root_ids[root_at < 0]])
    _, first, inverse = np.unique(outside, return_index=True, return_inverse=True)
    by_first = np.argsort(first, kind="stable")
    rank = np.empty_like(by_first)
    rank[by_first] = np.arange(len(by_first))
    number = rank[inverse.reshape(-1)]               # the live node of each outside use
    n_live = len(by_first)
    n = n_live + m
    values = np.empty(n_live, dtype=object)
    first_use = first[by_first]
    on_edge = first_use < len(outside_edges)
    edge = outside_edges[first_use[on_edge]]
    user = np.searchsorted(made_ptr, edge, side="right") - 1        # the made node using it
    at = np.flatnonzero(on_edge)
    found = np.zeros(n_live, dtype=bool)
    for pick, attribute in ((slots[user] >= 1) & (edge == made_ptr[user]), _a_of), \
                           ((slots[user] == 2) & (edge == made_ptr[user] + 1), _b_of):
        values[at[pick]] = list(map(attribute, map(created.__getitem__, user[pick].tolist())))
        found[at[pick]] = True
    rest = np.flatnonzero(~found)                    # first met as a root, or in a tuple of inputs
    values[rest] = [by_id[i] for i in outside[first_use[rest]].tolist()]
    values = values.tolist() + created
    kid_node = kid_at + n_live
    kid_node[outside_edges] = number[:len(outside_edges)]
    root_node = root_at + n_live
    root_node[root_at < 0] = number[len(outside_edges):]
    ptr = np.concatenate([np.zeros(n_live, dtype=np.intp), made_ptr])
    consumer = np.repeat(np.arange(n, dtype=np.intp), np.diff(ptr))
    input_node = made.find(inputs) + n_live          # inputs are made inside the call: all found

    # 4. Kinds. A made leaf is an input or a constant; an op on constants only is a constant too,
    #    baked (its inputs dropped). What depends on an input must be worked out in order.
    is_input = np.zeros(n, dtype=bool)
    is_input[input_node] = True
    has_kids = ptr[1:] > ptr[:-1]
    state = np.where(is_input, _EXAMPLE | _MOVES, 0)
    state[:n_live] = _MOVES
    state = np.array(_propagate(state.tolist(), ptr, kid_node), dtype=np.int8)
    kind = np.where(is_input, INPUT, np.where(has_kids & (state & _MOVES > 0), OP, CONST)).astype(np.int8)
    kind[:n_live] = LIVE
    floats = list(map(_data, values))
    _refuse_constants_from_data(values, floats, kind, np.flatnonzero((kind == CONST) & ~has_kids).tolist())
    data = np.array(floats, dtype=float)
    baked = (kind == CONST) & has_kids
    if baked.any():
        kept = ~baked[consumer]
        consumer, kid_node = consumer[kept], kid_node[kept]
        ptr = _pointers(consumer, n)
    rule = np.full(n, -1, dtype=np.intp)
    rule[n_live:] = code
    rule[kind != OP] = -1
    arg = np.full(n, np.nan)
    powk = np.flatnonzero([isinstance(r, Primitive) and r.kind == 3 for r in table])
    if len(powk):
        at = np.flatnonzero(np.isin(code, powk))
        arg[at + n_live] = [created[i]._b for i in at.tolist()]

    # 5. Keep what the outputs depend on, and give each node the set of differentiable outputs
    #    that depend on it (one bit per output; one more bit marks what is read forward only).
    #    When every op but the outputs feeds another op, every op reaches an output; with one
    #    differentiable output and no op unused but it, that is the whole answer.
    roots_list = root_node.tolist()
    unused = set(np.flatnonzero((np.bincount(kid_node, minlength=n) == 0) & (kind == OP)).tolist())
    if n_diff <= 1 and unused <= ({roots_list[0]} if n_diff else set(roots_list)):
        reach = [n_diff] * n
        keep = None
    else:
        reach = _reach(n, n_diff, roots_list, ptr.tolist(), kid_node.tolist())
        keep = np.flatnonzero(np.array(reach, dtype=object) != 0) if not all(reach) else None
        reach = [r & ~(1 << n_diff) for r in reach]

    g = Graph()
    if keep is not None:                                 # renumber the kept nodes
        new = np.full(n, -1, dtype=np.intp)
        new[keep] = np.arange(len(keep))
        edge = new[consumer] >= 0
        consumer, kid_node = new[consumer[edge]], new[kid_node[edge]]
        values = list(map(values.__getitem__, keep.tolist()))
        kind, state, rule, arg, data = kind[keep], state[keep], rule[keep], arg[keep], data[keep]
        reach = list(map(reach.__getitem__, keep.tolist()))
        roots_list = new[root_node].tolist()
        input_node = new[input_node]
        n, n_live = len(keep), int(np.count_nonzero(keep < n_live))
        ptr = _pointers(consumer, n)
    g.values, g.kind, g.reach, g.n_diff, g.n_live = values, kind, reach, n_diff, n_live
    g.example = (state & _EXAMPLE) > 0
    g.ptr, g.kids = ptr, kid_node
    g.k0, g.k1 = _nth_kid(ptr, kid_node, 0), _nth_kid(ptr, kid_node, 1)
    g.rules = table
    g.rule, g.arg = rule, arg
    g.fanout = np.bincount(kid_node, minlength=n) + np.bincount(np.asarray(roots_list, dtype=np.intp), minlength=n)
    g.data = data
    g.roots = roots_list
    g.inputs = input_node.tolist()
    bad = [i for i in np.unique(rule[rule >= 0]).tolist() if not isinstance(table[i], Primitive)]
    if bad:
        _rule(values[int(np.flatnonzero(np.isin(rule, bad))[0])])     # raises the named error
    return g


def _nth_kid(ptr: np.ndarray, kids: np.ndarray, k: int) -> np.ndarray:
    """Each node's input number ``k`` (-1 where it has fewer inputs)."""
    out = np.full(len(ptr) - 1, -1, dtype=np.intp)
    has = ptr[1:] - ptr[:-1] > k
    out[has] = kids[ptr[:-1][has] + k]
    return out


def _pointers(consumer: np.ndarray, n: int) -> np.ndarray:
    """CSR row pointers from edges sorted by consumer: node i's inputs are edges ptr[i]:ptr[i+1]."""
    return np.concatenate([[0], np.cumsum(np.bincount(consumer, minlength=n))]).astype(np.intp)


def _propagate(state: list, ptr: np.ndarray, kids: np.ndarray) -> list:
    """Each op's state is the ``or`` of its inputs' (in topological order): it depends on an input
    if any of its inputs does, and is baked if none of them depends on anything that moves.

    Ops of one or two inputs (nearly all) run in one tight loop; others are marked -1 there."""
    count = ptr[1:] - ptr[:-1]
    ops = np.flatnonzero(count > 0)
    first = _nth_kid(ptr, kids, 0)[ops]
    second = np.where(count[ops] == 2, _nth_kid(ptr, kids, 1)[ops], first)
    first[count[ops] > 2] = -1
    for i, a, b in zip(ops.tolist(), first.tolist(), second.tolist()):
        if a >= 0:
            state[i] = state[a] | state[b]
        else:
            state[i] = reduce(operator.or_, map(state.__getitem__, kids[ptr[i]:ptr[i + 1]].tolist()), 0)
    return state


def _reach(n: int, n_diff: int, roots: list, ptr: list, kids: list) -> list:
    """Per node, the bit set of the outputs that depend on it (bit ``n_diff``: read forward only)."""
    reach = [0] * n
    forward_only = 1 << n_diff
    for o, i in enumerate(roots):
        reach[i] |= (1 << o) if o < n_diff else forward_only
    for i in range(n - 1, -1, -1):
        r = reach[i]
        if r:
            for c in kids[ptr[i]:ptr[i + 1]]:
                reach[c] |= r
    return reach


def _rule(v: Value):
    try:
        return rule_of(v)
    except NotImplementedError as err:
        raise NotReplayableError(
            f"cannot replay op {v._op!r}: {err}. A replay applies table rules to arrays; register the op "
            f"with chainrule.primitive(name, forward, backward) and build it with that primitive") from None


def _refuse_constants_from_data(values: list, numbers: list, kind: np.ndarray, leaves: list[int]) -> None:
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
    # Which nodes hold the float object of a constant (a C-level pass); usually only the constant.
    ids = np.fromiter(map(id, numbers), dtype=np.int64, count=len(values))
    holders = np.flatnonzero(np.isin(ids, ids[leaves]))
    if len(holders) == len(leaves):
        return
    constants = {id(values[i].data): values[i] for i in leaves}
    for i in holders[np.isin(kind[holders], (INPUT, OP))].tolist():
        v, k = values[i], int(kind[i])
        c = constants[id(v.data)]
        if c is v or (k == OP and v._rule not in _FRESH):
            continue
        what = "an input" if k == INPUT else f"the result of op {v._op!r}"
        raise NotReplayableError(
            f"fn made a constant Value({c.data!r}) from the number of {what} while recording "
            f"(as Value(x.data) or max over .data does): a replay would keep that recorded number for "
            f"every call. Build it from Values so it stays in the graph (x itself, or relu for a max), "
            f"or call fn without compile")
