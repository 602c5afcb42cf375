"""Stage 2, plan: fuse a recording into groups of same-shaped work and lay out the buffers.

1. Fuse: a chain of additions whose inner sums feed nothing else becomes one sum node, and the
   products in it (each used only there) become its dot products.
2. Level: every remaining op gets a depth (1 + the deepest of its operands).
3. Group: ops of the same depth, primitive, operand kinds (shared or per example) and set of
   outputs that depend on them become one kernel. Grouping by that set means a backward pass from
   one output runs only kernels on its paths, so another output's numbers cannot leak into it.
4. Grids: when a group's products pair every row of a shared matrix (the weights) with the same
   per-example rows (the layer's inputs), the group is a matrix product.
5. Lay out: shared buffer = live Values (an optimizer's parameters in its order, the others in the
   order of the group that reads the most of them, so a layer's weights lie as a strided matrix),
   constants, shared groups; per-example buffer = inputs, then per-example groups. Each group
   writes a contiguous range, so the next layer reads a view.
6. First writers: a matrix product whose operand's gradient rows nothing writes before it in
   backward writes them directly, instead of adding a temporary into them.
"""

from __future__ import annotations

import operator
from itertools import repeat

import numpy as np

from ..engine import PRIMITIVES
from .kernels import Elementwise, Ref, SumDot
from .record import CONST, LIVE, OP, Graph, _pointers

_CLASSES = 5                 # kinds of term in a fused sum (see step 1)
_node_of = operator.attrgetter("_node")

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
    lie as a strided matrix, still a view. The other live Values are placed in the order of the
    group that reads the most of them."""
    n = len(g)
    kind, example, fanout, ptr, kids = g.kind, g.example, g.fanout, g.ptr, g.kids
    code = {id(r): c for c, r in enumerate(g.rules)}
    add = g.rule == code.get(id(PRIMITIVES["+"]), -2)
    mul = g.rule == code.get(id(PRIMITIVES["*"]), -2)

    # 1. Fuse sums, with numpy over all nodes at once. An addition used once, by an addition, is
    #    inner: it belongs to the sum of the outermost addition above it (found by pointer jumping:
    #    each round halves the distance). A sum's terms are the inputs of its additions that are
    #    not inner ones, in the order they were made; a product used once, only there, becomes a
    #    dot-product pair of its two inputs.
    consumer = np.repeat(np.arange(n, dtype=np.intp), np.diff(ptr))       # the op of each edge
    parent = np.full(n, -1, dtype=np.intp)
    parent[kids] = consumer                                               # right where fanout is 1
    inner = add & (fanout == 1) & (parent >= 0)
    inner[inner] = add[parent[inner]]
    root = np.arange(n, dtype=np.intp)
    root[inner] = parent[inner]
    while True:
        jumped = root[root]
        if np.array_equal(jumped, root):
            break
        root = jumped
    edge = np.flatnonzero(add[consumer] & ~inner[kids])
    term, owner = kids[edge], root[consumer[edge]]
    pair = mul[term] & (fanout[term] == 1) & (example[term] == example[owner])
    x, y = g.k0[term], g.k1[term]
    # Term classes: plain shared, plain per example, then products (shared, per example) with the
    # shared factor first, (per example, per example), and (shared, shared) in a shared sum.
    cls = np.where(~pair, example[term].astype(np.int8),
                   np.where(~example[owner], 4, np.where(example[x] & example[y], 3, 2))).astype(np.intp)
    swap = (cls == 2) & example[x]
    left = np.where(pair, np.where(swap, y, x), term)
    right = np.where(pair, np.where(swap, x, y), -1)
    absorbed = inner.copy()
    absorbed[term[pair]] = True
    is_sum = add & ~inner
    sum_nodes = np.flatnonzero(is_sum)
    sum_number = np.full(n, -1, dtype=np.intp)
    sum_number[sum_nodes] = np.arange(len(sum_nodes))
    counts = np.bincount(sum_number[owner] * _CLASSES + cls,
                         minlength=len(sum_nodes) * _CLASSES).reshape(-1, _CLASSES)
    # Within a class, terms go in the order they were made: left to right as written whatever the
    # association, so sums written a + (b + c) and (a + b) + c line up for a matrix product.
    by_class = np.lexsort((term, owner, cls))            # class, sum, then order (a stable sort)
    left_sorted, right_sorted = left[by_class], right[by_class]
    flat = counts.T.reshape(-1)
    class_start = (np.cumsum(flat) - flat).reshape(_CLASSES, -1)          # where (class, sum) begins

    # 2-3. Levels and groups, one fused op at a time in topological order (few: a layer's sums
    #    are one op per neuron). ``need``: the op leads to a live Value (backward skips the rest).
    #    An op's operands are a sum's plain terms and both factors of its pairs, or another op's
    #    inputs; only those that are ops themselves need the loop, what leaves give is found first.
    ops_mask = (kind == OP) & ~absorbed
    from_plain = (ops_mask & ~is_sum)[consumer]
    owner_all = np.concatenate([owner, owner[pair], consumer[from_plain]])
    operand_all = np.concatenate([left, right[pair], kids[from_plain]])
    leaf_needs = np.bincount(owner_all[kind[operand_all] == LIVE], minlength=n) > 0
    inner_edge = kind[operand_all] == OP
    by_owner = np.argsort(owner_all[inner_edge], kind="stable")
    operand_ptr = _pointers(owner_all[inner_edge][by_owner], n)
    operand_list = operand_all[inner_edge][by_owner].tolist()
    ops = np.flatnonzero(ops_mask)
    sum_shape = {i: ("+",) + tuple(row) for i, row in zip(sum_nodes.tolist(), counts.tolist())}
    level: dict[int, int] = {}
    need: dict[int, bool] = {}
    groups: dict[tuple, list[int]] = {}
    at_level, need_of = level.__getitem__, need.__getitem__
    rule_list, reach = g.rule.tolist(), g.reach
    for i, ex_i, base, s0, s1 in zip(ops.tolist(), example[ops].tolist(), leaf_needs[ops].tolist(),
                                     operand_ptr[ops].tolist(), operand_ptr[ops + 1].tolist()):
        these = operand_list[s0:s1]
        level[i] = lv = 1 + max(map(at_level, these), default=0)
        need[i] = base or any(map(need_of, these))
        shape = sum_shape.get(i)
        if shape is None:
            shape = (g.rules[rule_list[i]].name, tuple(example[kids[ptr[i]:ptr[i + 1]]].tolist()))
        groups.setdefault((ex_i, lv, reach[i], rule_list[i], shape), []).append(i)
    order = sorted(groups, key=lambda k: (k[0], k[1], k[2], k[3], repr(k[4])))

    # 4. Member order (a grid permutes it) and the node arrays each kernel reads.
    specs = []
    for key in order:
        members = groups[key]
        if is_sum[members[0]]:
            at = np.array(members, dtype=np.intp)
            cols = [None] * _CLASSES
            for c, k in enumerate(key[4][1:]):
                if k:
                    idx = class_start[c, sum_number[at]][:, None] + np.arange(k)
                    cols[c] = left_sorted[idx] if c < 2 else np.stack([left_sorted[idx], right_sorted[idx]], -1)
            parts, pairs = cols[:2], cols[2:]
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
            at = np.array(members, dtype=np.intp)
            first = ptr[at]
            ins = [kids[first + p] for p in range(int(ptr[members[0] + 1] - first[0]))]
            specs.append(("elem", key, members, ins))

    # 5. Slots.
    slot = np.full(n, -1, dtype=np.intp)
    is_live = kind == LIVE
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
        found = g.find_live(live_order)
        place_live(found[found >= 0])
    # The others in the order of the group that reads most of them first (an L2 penalty over all
    # the parameters, else the widest layer's weights): that group then reads one contiguous run,
    # and a layer whose weights lie in neuron order still reads them as a strided matrix.
    def live_read(spec) -> int:
        nodes = np.concatenate([np.asarray(x).reshape(-1) for x in read_arrays(spec)])
        return -len(np.unique(nodes[is_live[nodes]]))
    for spec in sorted(specs, key=live_read):
        for nodes in read_arrays(spec):
            place_live(nodes)
    place_live(np.arange(n))                                   # live Values no group reads (an output)
    for k, i in enumerate(g.inputs):
        if i >= 0:
            slot[i] = k
    consts = np.flatnonzero(kind == CONST)
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

    # Which operands lead to a live Value: backward skips terms that reach none (inputs, constants).
    needs = is_live.copy()
    needs[list(need)] = list(need.values())

    def ref(nodes):
        nodes = np.asarray(nodes)
        flat = nodes.reshape(-1)
        return Ref(bool(example[flat[0]]), slot[nodes]), bool(needs[flat].any())

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
            rule = g.rules[key[3]]
            k = g.arg[members] if rule.kind == 3 else None
            p.kernels.append(Elementwise(rule, key[0], start, stop, [r for r, _ in refs], k,
                                         [need for _, need in refs], key[2]))

    p.n_live, p.n_S, p.n_E = n_live, next_S, next_E
    p.outs = [(bool(example[i]), int(slot[i])) for i in g.roots]
    _find_first_writers(p)
    live_nodes = np.flatnonzero(is_live)
    by_slot = live_nodes[np.argsort(slot[live_nodes])]
    by_slot = by_slot.tolist()
    p.live = list(map(g.values.__getitem__, by_slot))
    p.live_reach = list(map(g.reach.__getitem__, by_slot))
    made_by_op = np.fromiter(map(operator.is_not, map(_node_of, p.live), repeat(None)), dtype=bool, count=len(by_slot))
    p.frontier = [s for s in np.flatnonzero(made_by_op).tolist() if p.live[s]._prev]
    p.consts = g.data[consts]
    data = g.data
    p.first_S, p.first_E = np.zeros(p.n_S), np.zeros(p.n_E)
    shared = (slot >= 0) & ~example
    per_example = (slot >= 0) & example
    p.first_S[slot[shared]] = data[shared]
    p.first_E[slot[per_example]] = data[per_example]
    p.n_nodes, p.n_fused = n, int(absorbed.sum())
    return p


def _find_first_writers(p: Program) -> None:
    """Mark each matrix product's operand whose gradient rows nothing writes before it in backward:
    no output's seed, no term of a kernel that backward runs earlier, no earlier term of its own
    kernel. Those rows are still zero when it comes, so it writes them instead of adding into
    them; terms that come later add as before (an L2 penalty on the same weights)."""
    writes = []                                # (buffer, rows, position), in the order backward writes
    for example, s in p.outs:
        writes.append((example, np.array([s], dtype=np.intp), 0))
    position, grid_terms = 0, []
    for k in reversed(p.kernels):              # backward runs the kernels in reverse
        for ref, need in k.backward_terms():
            position += 1
            if need:
                writes.append((ref.example, ref.index.idx.reshape(-1), position))
        if isinstance(k, SumDot) and k.grid is not None:
            grid_terms.append((k, position - 1, position))
    first = [np.full(p.n_S, -1, dtype=np.intp), np.full(p.n_E, -1, dtype=np.intp)]
    for example, rows, at in reversed(writes):    # earlier writers overwrite later ones
        first[example][rows] = at
    for k, at_a, at_b in grid_terms:
        k.writes_first = tuple(bool(need) and bool(np.all(first[ref.example][ref.index.idx] == at))
                               for ref, need, at in ((k.grid[0], k.grid[2], at_a), (k.grid[1], k.grid[3], at_b)))
