"""Stage 2, plan: fuse a recording into groups of same-shaped work and lay out the buffers.

1. Fuse: a chain of additions whose inner sums feed nothing else becomes one sum node, and the
   products in it (each used only there) become its dot products.
2. Level: every remaining op gets a depth (1 + the deepest of its operands).
3. Group: ops of the same depth, primitive, operand kinds (shared or per example) and set of
   outputs that depend on them become one kernel. Grouping by that set means a backward pass from
   one output runs only kernels on its paths, so another output's numbers cannot leak into it.
4. Grids: when a group's products pair every row of a shared matrix (the weights) with the same
   per-example rows (the layer's inputs), the group is a matrix product.
5. Lay out: shared buffer = live Values (placed in the order the first group reads them, so a
   layer's weights lie as a matrix), constants, shared groups; per-example buffer = inputs, then
   per-example groups. Each group writes a contiguous range, so the next layer reads a view.
"""

from __future__ import annotations

import numpy as np

from ..engine import PRIMITIVES
from .kernels import Elementwise, Ref, SumDot
from .record import CONST, LIVE, OP, Graph

__all__ = ["Program", "plan"]


class Program:
    """What a replay runs: kernels in order (shared ones first) and the two buffers' layout."""

    def __init__(self):
        self.kernels: list = []
        self.n_S = self.n_E = self.n_live = 0
        self.live: list = []                 # the live Values, by slot
        self.frontier: list[int] = []        # live slots holding a Value made by an op (w3 = w * 3)
        self.consts = np.empty(0)
        self.outs: list[tuple] = []          # (per example?, slot) of every output
        self.live_reach: list[int] = []      # per live slot: the outputs that depend on it
        self.first_S = self.first_E = None   # the recording's own numbers (the first call's result)
        self.n_nodes = self.n_fused = 0


def _unique_rows(m: np.ndarray):
    """The distinct rows of ``m`` in order of first appearance, and each row's number among them."""
    uniq, first, inverse = np.unique(m, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return uniq[order], rank[inverse.reshape(-1)]


def _factor(a: np.ndarray, b: np.ndarray):
    """Dot products ``sum_k a[r,k]*b[r,k]`` whose rows pair each of nA distinct a-rows with each of
    nB distinct b-rows form a matrix product: return the member order and the two matrices."""
    ua, ia = _unique_rows(a)
    ub, ib = _unique_rows(b)
    if len(ua) * len(ub) != len(a):
        return None
    key = ib * len(ua) + ia
    if len(np.unique(key)) != len(a):
        return None
    return np.argsort(key), ua, ub


def plan(g: Graph, live_order: list | None = None) -> Program:
    """The program for recording ``g``. ``live_order`` (a list of Values, e.g. an optimizer's
    parameters) puts those live Values first, in that order, so that an array holding their numbers
    in that order is the shared buffer's first rows as they are (no gather); a layer's weights then
    lie as a strided matrix, still a view. Without it, live Values are placed in the order the
    first group reads them."""
    n = len(g)
    kind, example, kids, prim = g.kind, g.example, g.kids, g.prim
    add_rule, mul_rule = PRIMITIVES["+"], PRIMITIVES["*"]

    fanout = g.fanout

    # 1. Fuse sums, from the top. A sum's terms: plain shared, plain per example, and products
    #    (shared, per example), (per example, per example), (shared, shared).
    absorbed = [False] * n
    sums: dict[int, tuple] = {}
    adds = [i for i in range(n - 1, -1, -1) if prim[i] is add_rule]
    for i in adds:
        if absorbed[i]:
            continue
        terms, stack = [], list(reversed(kids[i]))
        while stack:
            c = stack.pop()
            if prim[c] is add_rule and fanout[c] == 1:
                absorbed[c] = True
                stack.extend(reversed(kids[c]))
            else:
                terms.append(c)
        ps, pe, se, ee, ss = [], [], [], [], []
        for t in terms:
            if prim[t] is mul_rule and fanout[t] == 1 and example[t] == example[i]:
                absorbed[t] = True
                x, y = kids[t]
                if not example[i]:
                    ss.append((x, y))
                elif example[x] and example[y]:
                    ee.append((x, y))
                else:
                    se.append((y, x) if example[x] else (x, y))
            else:
                (pe if example[t] else ps).append(t)
        sums[i] = (ps, pe, se, ee, ss)

    def operands(i):
        if i in sums:
            ps, pe, se, ee, ss = sums[i]
            return ps + pe + [x for pair in se + ee + ss for x in pair]
        return kids[i]

    # 2-3. Levels and groups.
    level = [0] * n
    groups: dict[tuple, list[int]] = {}
    ops = [i for i in range(n) if kind[i] == OP and not absorbed[i]]
    for i in ops:
        level[i] = 1 + max(level[c] for c in operands(i))
        if i in sums:
            shape = ("+",) + tuple(len(part) for part in sums[i])
        else:
            shape = (prim[i].name, tuple(example[c] for c in kids[i]))
        groups.setdefault((example[i], level[i], g.reach[i], id(prim[i]), shape), []).append(i)
    order = sorted(groups, key=lambda k: (k[0], k[1], k[2], k[3], repr(k[4])))

    # 4. Member order (a grid permutes it) and the node arrays each kernel reads.
    specs = []
    for key in order:
        members = groups[key]
        if key[4][0] == "+" and prim[members[0]] is add_rule and members[0] in sums:
            parts = [np.array([sums[i][p] for i in members], dtype=np.intp).reshape(len(members), -1)
                     if len(sums[members[0]][p]) else None for p in range(2)]
            pairs = [np.array([sums[i][p] for i in members], dtype=np.intp).reshape(len(members), -1, 2)
                     if len(sums[members[0]][p]) else None for p in range(2, 5)]
            grid = None
            sh = 0 if pairs[0] is not None else 2 if pairs[2] is not None else None
            if sh is not None and pairs[1] is None and pairs[2 - sh] is None:
                factored = _factor(pairs[sh][..., 0], pairs[sh][..., 1])
                if factored is not None:
                    perm, A, B = factored
                    members = [members[r] for r in perm]
                    # Plain terms in the grid's shape (b-row, a-row, term): a bias shared by every
                    # b-row (example) is then a view with a zero stride, not a gather.
                    parts = [None if p is None else p[perm].reshape(len(B), len(A), -1) for p in parts]
                    grid = (A, B)
                    pairs[sh] = None
            specs.append(("sum", key, members, parts, pairs, grid))
        else:
            ins = [np.array([kids[i][p] for i in members], dtype=np.intp) for p in range(len(kids[members[0]]))]
            specs.append(("elem", key, members, ins))

    # 5. Slots.
    slot = np.full(n, -1, dtype=np.intp)
    is_live = np.array([k == LIVE for k in kind], dtype=bool)
    n_live = int(is_live.sum())
    next_live = [0]

    def place_live(nodes):
        nodes = np.asarray(nodes).reshape(-1)
        nodes = nodes[is_live[nodes] & (slot[nodes] < 0)]
        if nodes.size:
            uniq, first = np.unique(nodes, return_index=True)
            uniq = uniq[np.argsort(first, kind="stable")]
            slot[uniq] = np.arange(next_live[0], next_live[0] + len(uniq))
            next_live[0] += len(uniq)

    def read_arrays(spec):
        if spec[0] == "sum":
            _, _, _, parts, pairs, grid = spec
            arrays = [p for p in parts if p is not None] + [p for p in pairs if p is not None]
            return ([grid[0], grid[1]] if grid is not None else []) + arrays
        return spec[3]

    if live_order:
        where = g.position
        place_live(np.array([i for i in map(where.get, live_order) if i is not None and kind[i] == LIVE],
                            dtype=np.intp))
    for spec in sorted(specs, key=lambda s: not s[1][0]):     # per-example groups read weights first
        for nodes in read_arrays(spec):
            place_live(nodes)
    place_live(np.arange(n))                                   # live Values no group reads (an output)
    for k, i in enumerate(g.inputs):
        if i >= 0:
            slot[i] = k
    consts = [i for i in range(n) if kind[i] == CONST]
    slot[consts] = np.arange(n_live, n_live + len(consts))
    next_S, next_E = n_live + len(consts), len(g.inputs)
    for spec in specs:
        members = spec[2]
        if spec[1][0]:
            slot[members] = np.arange(next_E, next_E + len(members))
            next_E += len(members)
        else:
            slot[members] = np.arange(next_S, next_S + len(members))
            next_S += len(members)

    # Which nodes lead to a live Value: backward skips terms that reach none (inputs, constants).
    needs = [k == LIVE for k in kind]
    for i in ops:
        needs[i] = any(needs[c] for c in operands(i))

    def ref(nodes):
        nodes = np.asarray(nodes)
        flat = nodes.reshape(-1)
        return Ref(bool(example[flat[0]]), slot[nodes]), any(needs[c] for c in flat.tolist())

    p = Program()
    for spec in specs:
        key, members = spec[1], spec[2]
        start = int(slot[members[0]])
        stop = start + len(members)
        if spec[0] == "sum":
            _, _, _, parts, pairs, grid = spec
            plains = [ref(x) for x in parts if x is not None]
            dots = []
            for x in pairs:
                if x is not None:
                    (ra, na), (rb, nb) = ref(x[..., 0]), ref(x[..., 1])
                    dots.append((ra, rb, na, nb))
            grid_refs = None
            if grid is not None:
                (ra, na), (rb, nb) = ref(grid[0]), ref(grid[1])
                grid_refs = (ra, rb, na, nb)
            p.kernels.append(SumDot(key[0], start, stop, plains, dots, grid_refs, key[2]))
        else:
            refs = [ref(x) for x in spec[3]]
            k = [g.values[i]._arg for i in members]
            k = None if k[0] is None else k
            p.kernels.append(Elementwise(prim[members[0]], key[0], start, stop, [r for r, _ in refs], k,
                                         [need for _, need in refs], key[2]))

    p.n_live, p.n_S, p.n_E = n_live, next_S, next_E
    live_nodes = np.flatnonzero(is_live)
    by_slot = live_nodes[np.argsort(slot[live_nodes])]
    p.live = [g.values[i] for i in by_slot.tolist()]
    p.live_reach = [g.reach[i] for i in by_slot.tolist()]
    p.frontier = [s for s, v in enumerate(p.live) if v._prev]
    p.consts = np.array([g.data[i] for i in consts], dtype=float)
    p.outs = [(bool(example[i]), int(slot[i])) for i in g.roots]
    data = np.array(g.data, dtype=float)
    p.first_S, p.first_E = np.zeros(p.n_S), np.zeros(p.n_E)
    shared = (slot >= 0) & ~np.array(example, dtype=bool)
    per_example = (slot >= 0) & np.array(example, dtype=bool)
    p.first_S[slot[shared]] = data[shared]
    p.first_E[slot[per_example]] = data[per_example]
    p.n_nodes, p.n_fused = n, sum(absorbed)
    return p
