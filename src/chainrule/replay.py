"""Compiled replay: record the graph a function builds once, then replay it with numpy.

Scalar autograd is the clearest way to learn backprop and the slowest way to run it. ``compile``
keeps the scalar code and makes it fast: the first call runs ``fn`` eagerly on Values and records
the graph it builds into a flat program; later calls replay that program with a few dozen numpy
operations instead of tens of thousands of Python objects.

>>> import random
>>> from chainrule import MLP, compile
>>> random.seed(0)
>>> model = MLP(2, [4, 1], activation="relu", output_activation="linear")
>>> score = compile(model)
>>> eager = model([0.5, -1.0])
>>> replayed = score([0.5, -1.0])                  # first call: records
>>> replayed = score([0.5, -1.0])                  # later calls: replay
>>> abs(replayed.data - eager.data) < 1e-12
True
>>> score.batch([[0.5, -1.0], [1.0, 2.0]]).shape   # many examples in one pass
(2,)

How the recording is read
-------------------------
Every leaf of the recorded graph is one of three things:

- an **input**: a number the call's arguments supplied. Floats (numbers, lists, nested lists, float
  numpy arrays) become fresh Values for ``fn``; later calls feed new numbers into the same slots.
- a **parameter**: a Value that existed before the call (a model's weights, captured by ``fn``).
  Its current ``.data`` is read at every replay, and ``backward()`` adds into its ``.grad``.
- a **constant**: a Value created during the call (``1 - y * s`` makes a ``Value(1)``), baked in.
  So create parameters before the first call: one that ``fn`` creates lazily while recording is
  a constant to the replay, and training would not change it.

Like ``torch.jit.trace``, replay does not re-run Python: whatever ``fn`` decided from the numbers
it saw while recording (an ``if x.data > 0``, ``max`` over data, a label used to pick a logit) is
baked in. Integers (Python ints, integer numpy arrays, lists of ints), bools, strings and ``None``
are treated as such structure: they are passed to ``fn`` unchanged, and a later call must pass equal
ones. The shapes of float arguments are structure too. A call that differs from the recording in
any of these raises :class:`ReplayMismatchError` naming the difference (compile a second function
for a second shape). Passing Values as arguments is refused: arguments are data, parameters are
what ``fn`` captures.

How the replay runs
-------------------
Nodes are grouped by depth and op, and each group runs as one numpy operation, applying the rule
from the engine's table of primitives (``PRIMITIVES``) to arrays through the ``ARRAY`` math
namespace. Two shapes are fused: a chain of additions (``b + w0*x0 + w1*x1 + ...``) becomes one
reduction, with the products in it as a dot product; and a group of dot products whose operands
form a grid (every neuron of a layer times every example) becomes one matrix product. Slots are
laid out so that most groups read and write contiguous or evenly strided views (no gathers), and
gradients are scattered back with ``np.bincount`` where a node feeds many others. Results equal
the eager ones up to floating-point summation order (differences of order 1e-16 times the size of
the numbers summed). Each call's results keep their own slot buffer (one float per node left after
fusion), so ``backward()`` works on any earlier result; the buffer is reused once they are dropped.

Numerical errors: where the eager engine raises (``exp`` overflowing, ``log`` of a non-positive
number, ``0 ** -1``, a negative number to a fractional power), the replay checks the results of
those ops and raises the same kind of error with the same message, for the first offending element
of the first group that fails (forward and backward alike; when several ops would fail, the
replay's depth order may pick another one than eager's evaluation order). Backward skips the parts
of the graph that lead to no parameter, so an error there is not raised. Overflow in ``+`` and
``*`` gives ``inf`` silently in both, as Python floats do.
"""

from __future__ import annotations

import gc
import numbers
import operator
from typing import Callable

import numpy as np

from .engine import ARRAY, PRIMITIVES, SCALAR, Value, enable_grad, rule_of, topological_order

__all__ = ["Compiled", "ReplayMismatchError", "ReplayValue", "compile"]

_get_data = operator.attrgetter("data")


class ReplayMismatchError(ValueError):
    """A compiled function was called with arguments whose structure differs from its recording."""


# --- the math namespace for replay --------------------------------------------------------------

def _check_finite(out, scalar_fn, *inputs):
    # A non-finite result from finite inputs is where the eager engine would have raised: re-run the
    # scalar function on that element so the error is the eager one, type and message.
    if np.isfinite(out).all():
        return
    arrays = np.broadcast_arrays(out, *inputs)
    bad = ~np.isfinite(arrays[0])
    for a in arrays[1:]:
        bad &= np.isfinite(a)
    for i in np.flatnonzero(bad):
        scalar_fn(*(float(a.flat[i]) for a in arrays[1:]))


class _CheckedArrayMath:
    """The engine's ``ARRAY`` namespace, except that ``exp``, ``log`` and ``pow`` raise the eager
    engine's errors instead of quietly returning inf or nan."""

    def __getattr__(self, name: str):
        return getattr(ARRAY, name)

    @staticmethod
    def exp(x):
        out = ARRAY.exp(x)
        _check_finite(out, SCALAR.exp, x)
        return out

    @staticmethod
    def log(x):
        out = ARRAY.log(x)
        _check_finite(out, SCALAR.log, x)
        return out

    @staticmethod
    def pow(x, y):
        out = ARRAY.pow(x, y)
        _check_finite(out, SCALAR.pow, x, y)
        return out

    @staticmethod
    def sqrt(x):
        out = ARRAY.sqrt(x)
        _check_finite(out, SCALAR.sqrt, x)
        return out

    @staticmethod
    def div(x, y):
        out = ARRAY.div(x, y)
        _check_finite(out, SCALAR.div, x, y)
        return out


_MATH = _CheckedArrayMath()
_MUL = PRIMITIVES["*"]


# --- index arrays: views where possible, gathers and scatter-adds where not ----------------------

def _affine(idx: np.ndarray):
    """``(base, strides)`` if ``idx[i, j, ...] == base + i*s0 + j*s1 + ...`` with strides >= 0, else None."""
    base = int(idx.flat[0])
    strides = []
    expected = np.full(idx.shape, base, dtype=np.intp)
    for d, n in enumerate(idx.shape):
        s = 0
        if n > 1:
            corner = [0] * idx.ndim
            corner[d] = 1
            s = int(idx[tuple(corner)]) - base
            if s < 0:
                return None
            shape = [1] * idx.ndim
            shape[d] = n
            expected = expected + (np.arange(n, dtype=np.intp) * s).reshape(shape)
        strides.append(s)
    if not np.array_equal(idx, expected):
        return None
    return base, tuple(strides)


def _strided(buf: np.ndarray, base: int, shape: tuple, strides: tuple) -> np.ndarray:
    """A view of rows ``base + sum(i_d * strides_d)`` of ``buf`` (rows may carry a batch axis)."""
    if len(shape) == 1 and strides[0] == 1:
        return buf[base:base + shape[0]]
    row = buf.strides[0]
    return np.lib.stride_tricks.as_strided(
        buf[base:], shape=tuple(shape) + buf.shape[1:],
        strides=tuple(s * row for s in strides) + buf.strides[1:])


class _Index:
    """One index array into the slot buffer, with the cheapest way to read it and to add into it,
    both decided once at record time."""

    def __init__(self, idx):
        self.idx = np.ascontiguousarray(idx, dtype=np.intp)
        self.shape = self.idx.shape
        self.affine = _affine(self.idx)
        self._scatter = None

    def reader(self, buf: np.ndarray) -> Callable[[], np.ndarray]:
        if self.affine is not None:
            view = _strided(buf, self.affine[0], self.shape, self.affine[1])
            return lambda: view
        idx = self.idx
        return lambda: buf[idx]

    def _plan_scatter(self):
        if self.affine is not None:
            base, strides = self.affine
            # Axes along which the index does not move (a bias shared by every example) are summed
            # first; what is left is a view if it does not overlap itself.
            summed = tuple(d for d, s in enumerate(strides) if s == 0 and self.shape[d] > 1)
            kept = tuple(1 if d in summed else n for d, n in enumerate(self.shape))
            if len(np.unique(self.idx)) == int(np.prod(kept)):
                return ("view", base, kept, strides, summed)
        uniq, inverse = np.unique(self.idx, return_inverse=True)
        if len(uniq) == self.idx.size:
            return ("fancy", self.idx.ravel())
        return ("bincount", _Index(uniq), inverse.ravel())

    def adder(self, grad: np.ndarray) -> Callable[[np.ndarray], None]:
        """``add(term)`` does ``grad[idx] += term`` with repeated indices summed (a scatter-add)."""
        if self._scatter is None:
            self._scatter = self._plan_scatter()
        shape = self.shape
        kind = self._scatter[0]
        if kind == "view":
            _, base, kept, strides, summed = self._scatter
            view = _strided(grad, base, kept, strides)
            if summed:
                def add(term):
                    if term.shape != shape:
                        term = np.broadcast_to(term, shape)
                    view.__iadd__(term.sum(axis=summed, keepdims=True))
            else:
                def add(term):
                    view.__iadd__(term)
            return add
        if kind == "fancy":
            flat = self._scatter[1]

            def add(term):
                grad[flat] += (term if term.shape == shape else np.broadcast_to(term, shape)).ravel()
            return add
        target, inverse = self._scatter[1], self._scatter[2]
        size = target.idx.size
        if target.affine is not None:
            view = _strided(grad, target.affine[0], target.shape, target.affine[1])

            def add(term):
                term = term if term.shape == shape else np.broadcast_to(term, shape)
                view.__iadd__(np.bincount(inverse, term.ravel(), size))
            return add
        uniq = target.idx

        def add(term):
            term = term if term.shape == shape else np.broadcast_to(term, shape)
            grad[uniq] += np.bincount(inverse, term.ravel(), size)
        return add

    def any(self, mask: np.ndarray) -> bool:
        return bool(mask[self.idx].any())


def _unique_rows(m: np.ndarray):
    """The distinct rows of ``m`` in order of first appearance, and each row's number among them."""
    uniq, first, inverse = np.unique(m, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return uniq[order], rank[inverse.reshape(-1)]


def _factor(a: np.ndarray, b: np.ndarray):
    """Dot products ``sum_k a[r,k]*b[r,k]`` whose rows are every pairing of nA distinct a-rows with nB
    distinct b-rows form the matrix product ``B @ A.T``: return the row order and the two matrices."""
    ua, ia = _unique_rows(a)
    ub, ib = _unique_rows(b)
    if len(ua) * len(ub) != len(a):
        return None
    key = ib * len(ua) + ia
    if len(np.unique(key)) != len(a):
        return None
    return np.argsort(key), ua, ub


# --- the kernels: one numpy operation (or two) per group ----------------------------------------

class _Elementwise:
    """Every node of one primitive at one depth: the table's rule applied to whole arrays."""

    def __init__(self, rule: str, start: int, stop: int, inputs: list, k, needs: np.ndarray):
        self.rule, self.start, self.stop = rule, start, stop
        self.inputs = [_Index(i) for i in inputs]
        self.k = None if k is None else np.asarray(k, dtype=float)
        self.input_needs = [i.any(needs) for i in self.inputs]
        self.needs = any(self.input_needs)

    def bind(self, vals: np.ndarray, grad: np.ndarray | None):
        prim = PRIMITIVES[self.rule]
        fwd, bwd = prim.forward, prim.backward
        readers = [i.reader(vals) for i in self.inputs]
        extra = () if self.k is None else (self.k.reshape(self.k.shape + (1,) * (vals.ndim - 1)),)
        out = vals[self.start:self.stop]

        def forward():
            out[...] = fwd(_MATH, *[r() for r in readers], *extra)
        if grad is None or not self.needs:
            return forward, None
        g = grad[self.start:self.stop]
        adders = [i.adder(grad) if need else None for i, need in zip(self.inputs, self.input_needs)]

        def backward():
            terms = bwd(_MATH, g, out, *[r() for r in readers], *extra)
            for add, term in zip(adders, terms):
                if add is not None:
                    add(term)
        return forward, backward


class _SumDot:
    """Every ``p0 + p1 + ... + a0*b0 + a1*b1 + ...`` with the same number of terms at one depth: a
    chain of additions (the '+' rule passes ``g`` to each term) with its products fused in (the '*'
    rule: ``a`` gains ``g*b``, ``b`` gains ``g*a``). When the products form a grid, a matrix product."""

    def __init__(self, start, stop, plain, a, b, grid, needs: np.ndarray):
        self.start, self.stop, self.grid = start, stop, grid
        self.plain = None if plain is None else _Index(plain)
        self.a = None if a is None else _Index(a)
        self.b = None if b is None else _Index(b)
        self.part_needs = [p is not None and p.any(needs) for p in (self.plain, self.a, self.b)]
        self.needs = any(self.part_needs)

    def bind(self, vals: np.ndarray, grad: np.ndarray | None):
        out = vals[self.start:self.stop]
        batch = vals.shape[1:]
        read_p = None if self.plain is None else self.plain.reader(vals)
        read_a = None if self.a is None else self.a.reader(vals)
        read_b = None if self.b is None else self.b.reader(vals)
        one_plain = self.plain is not None and self.plain.shape[-1] == 1
        plain_axis = len(self.plain.shape) - 1 if self.plain is not None else 0

        def plain_sum():
            p = read_p()
            return p[..., 0, :] if batch and one_plain else (p[..., 0] if one_plain else p.sum(axis=plain_axis))

        if self.grid is not None:
            n_b, n_a = self.grid
            out_m = out.reshape((n_b, n_a) + batch)
            if not batch:
                def forward():
                    np.matmul(read_b(), read_a().T, out=out_m)
                    if read_p is not None:
                        out_m.__iadd__(plain_sum())
            else:
                def forward():
                    out_m[...] = np.einsum("ik...,jk...->ij...", read_b(), read_a())
                    if read_p is not None:
                        out_m.__iadd__(plain_sum())
        elif read_a is not None:
            def forward():
                acc = np.einsum("gk...,gk...->g...", read_a(), read_b())
                if read_p is not None:
                    acc += plain_sum()
                out[...] = acc
        else:
            def forward():
                out[...] = plain_sum()
        if grad is None or not self.needs:
            return forward, None

        g = grad[self.start:self.stop]
        need_p, need_a, need_b = self.part_needs
        add_p = self.plain.adder(grad) if need_p else None
        add_a = self.a.adder(grad) if need_a else None
        add_b = self.b.adder(grad) if need_b else None
        if self.grid is not None:
            g_m = g.reshape(self.grid)
            g_p = g_m[..., None]

            def backward():
                if add_p is not None:
                    add_p(g_p)
                # The '*' rule, summed over the rows that share an operand: a matrix product.
                if add_a is not None:
                    add_a(g_m.T @ read_b())
                if add_b is not None:
                    add_b(g_m @ read_a())
        else:
            g_col = g[:, None]

            def backward():
                if add_p is not None:
                    add_p(g_col)
                if add_a is not None or add_b is not None:
                    term_a, term_b = _MUL.backward(_MATH, g_col, None, read_a(), read_b())
                    if add_a is not None:
                        add_a(term_a)
                    if add_b is not None:
                        add_b(term_b)
        return forward, backward


# --- arguments -----------------------------------------------------------------------------------
# A spec describes one argument: ("float", shape) is data; ("baked", value) is structure passed to
# fn unchanged; ("seq", specs) is a ragged list/tuple of further specs.

def _spec(x, where: str):
    if isinstance(x, Value):
        raise TypeError(f"{where} is a Value; a compiled function takes plain numbers as arguments "
                        f"(pass {where}.data). Values that fn captures, like a model's weights, are its "
                        f"parameters and need no passing")
    if x is None or isinstance(x, (str, bool, np.bool_)):
        return ("baked", x)
    if isinstance(x, numbers.Integral):
        return ("baked", int(x))
    if isinstance(x, numbers.Real):
        return ("float", ())
    if isinstance(x, (np.ndarray, list, tuple)):
        try:
            a = np.asarray(x)
        except ValueError:          # ragged
            a = None
        if a is not None and a.dtype.kind == "f":
            return ("float", a.shape)
        if a is not None and a.dtype.kind in "iub":
            return ("baked", a.copy())
        if isinstance(x, (list, tuple)):
            return ("seq", tuple(_spec(item, f"{where}[{i}]") for i, item in enumerate(x)))
        raise TypeError(f"{where}: a numpy array of dtype {a.dtype} cannot be an argument; use floats")
    raise TypeError(f"{where}: a compiled function takes numbers, lists, tuples and numpy arrays, "
                    f"got {type(x).__name__}")


def _describe(spec) -> str:
    kind, payload = spec
    if kind == "float":
        return "a float number" if payload == () else f"floats of shape {payload}"
    if kind == "seq":
        return f"a list of {len(payload)} mixed items"
    if isinstance(payload, np.ndarray):
        return f"integers of shape {payload.shape} (baked in)"
    return f"{payload!r} (baked in)"


def _spec_difference(recorded, got, where: str) -> str | None:
    if recorded[0] != got[0]:
        return f"{where}: recorded {_describe(recorded)}, got {_describe(got)}"
    kind, a = recorded
    b = got[1]
    if kind == "float":
        return None if a == b else f"{where}: recorded floats of shape {a}, got shape {b}"
    if kind == "seq":
        if len(a) != len(b):
            return f"{where}: recorded a list of {len(a)} items, got {len(b)}"
        for i, (ra, gb) in enumerate(zip(a, b)):
            diff = _spec_difference(ra, gb, f"{where}[{i}]")
            if diff:
                return diff
        return None
    same = (np.array_equal(a, b) and np.shape(a) == np.shape(b)) if isinstance(a, np.ndarray) \
        or isinstance(b, np.ndarray) else (type(a) is type(b) and a == b)
    if same:
        return None
    return (f"{where}: recorded {_describe(recorded)}, got {_describe(got)}; integers are structure "
            f"(they may steer fn, like a label picking a logit), so they must repeat exactly. "
            f"Pass changing numbers as floats (e.g. y.astype(float))")


def _make_values(spec, x, leaves: list):
    """What ``fn`` receives while recording: float data as fresh Values (nested lists for arrays)."""
    kind, payload = spec
    if kind == "baked":
        return x
    if kind == "seq":
        return [_make_values(s, item, leaves) for s, item in zip(payload, x)]
    a = np.asarray(x, dtype=float)
    flat = [Value(v) for v in a.ravel().tolist()]
    leaves.extend(flat)

    def nest(items, shape):
        if len(shape) == 1:
            return items
        step = len(items) // shape[0] if shape[0] else 0
        return [nest(items[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]
    return flat[0] if a.ndim == 0 else nest(flat, a.shape)


def _float_size(spec) -> int:
    kind, payload = spec
    if kind == "float":
        return int(np.prod(payload))
    if kind == "seq":
        return sum(_float_size(s) for s in payload)
    return 0


# --- recording -----------------------------------------------------------------------------------

def _grad_enabled():
    # Recording needs the graph even if the caller is inside no_grad().
    return enable_grad()


def _flatten_outputs(out, found: list):
    if isinstance(out, Value):
        found.append(out)
        return len(found) - 1
    if isinstance(out, (list, tuple)):
        return (tuple if isinstance(out, tuple) else list)(_flatten_outputs(o, found) for o in out)
    raise TypeError(f"a compiled function must return a Value or a (nested) list/tuple of Values, "
                    f"got {type(out).__name__}")


class _Program:
    """The recording turned into slots and kernels. Built once; holds no interior Values."""

    def __init__(self, roots: list[Value], inputs: list[Value], existing: set[int]):
        # Values hash by identity, so they key dicts and sets directly.
        order: list[Value] = topological_order(roots[0])
        if len(roots) > 1:
            # One walk from a stand-in node over all roots (itself dropped): walking from each root
            # in turn rescans the graph they share, e.g. a model's weights once per output.
            order = topological_order(Value(0.0, tuple(roots)))[:-1]
        n = len(order)
        pos = {v: i for i, v in enumerate(order)}
        kids = [tuple(map(pos.__getitem__, v._prev)) for v in order]
        for v in order:
            rule_of(v)      # a closure-defined op cannot run on arrays: the engine's error says what to do
        rule = [v._rule if v._prev else "" for v in order]
        data = [v.data for v in order]
        input_ids = {id(v) for v in inputs}

        # Classify: 0 op, 1 parameter, 2 input, 3 constant (including ops on constants only).
        PARAM, INPUT, CONST, OP = 1, 2, 3, 0
        cls = [0] * n
        for i, v in enumerate(order):
            if not kids[i]:
                cls[i] = INPUT if id(v) in input_ids else PARAM if id(v) in existing else CONST
            elif all(cls[c] == CONST for c in kids[i]):
                cls[i] = CONST
            elif rule[i] not in PRIMITIVES:
                raise NotImplementedError(f"no derivative rule for op {rule[i]!r}; the ops with rules are "
                                          + ", ".join(PRIMITIVES))
        out_idx = [pos[r] for r in roots]

        fanout = [0] * n
        for i in range(n):
            if cls[i] == OP:
                for c in kids[i]:
                    fanout[c] += 1
        for i in out_idx:
            fanout[i] += 1

        # Fuse chains of additions (and the products they sum) into one node each, from the top.
        absorbed = [False] * n
        sums: dict[int, tuple[list[int], list[tuple[int, int]]]] = {}
        for i in range(n - 1, -1, -1):
            if cls[i] != OP or rule[i] != "+" or absorbed[i]:
                continue
            terms, stack = [], list(reversed(kids[i]))
            while stack:
                c = stack.pop()
                if cls[c] == OP and rule[c] == "+" and fanout[c] == 1:
                    absorbed[c] = True
                    stack.extend(reversed(kids[c]))
                else:
                    terms.append(c)
            plain, prods = [], []
            for t in terms:
                if cls[t] == OP and rule[t] == "*" and fanout[t] == 1:
                    absorbed[t] = True
                    prods.append(kids[t])
                else:
                    plain.append(t)
            sums[i] = (plain, prods)

        def operands(i):
            if i in sums:
                plain, prods = sums[i]
                return plain + [x for pair in prods for x in pair]
            return kids[i]

        # Depth levels and groups of same-shaped work.
        level = [0] * n
        groups: dict[tuple, list[int]] = {}
        for i in range(n):
            if cls[i] != OP or absorbed[i]:
                continue
            level[i] = 1 + max(level[c] for c in operands(i))
            if i in sums:
                key = (level[i], "+", len(sums[i][0]), len(sums[i][1]))
            else:
                key = (level[i], rule[i], 0, 0)
            groups.setdefault(key, []).append(i)

        # Slots: parameters, inputs (in argument order), constants, then each group contiguously.
        # A parameter's slot is given when a group first reads it, in the order that group reads
        # it, so that a layer's weights lie as a matrix the replay can view instead of gather.
        slot = np.full(n, -1, dtype=np.intp)
        is_param = np.array([c == PARAM for c in cls], dtype=bool)
        n_params = int(is_param.sum())
        param_slots = [n_params]        # a one-item list: the next free slot, counted down below

        def place_params(nodes: np.ndarray) -> None:
            nodes = nodes.reshape(-1)
            nodes = nodes[is_param[nodes] & (slot[nodes] < 0)]
            if nodes.size:
                uniq, first = np.unique(nodes, return_index=True)
                uniq = uniq[np.argsort(first, kind="stable")]
                start = n_params - param_slots[0]
                slot[uniq] = np.arange(start, start + len(uniq))
                param_slots[0] -= len(uniq)

        for k, v in enumerate(inputs):
            if v in pos:
                slot[pos[v]] = n_params + k
        n_leaf = n_params + len(inputs)
        used_const = set()
        for i in range(n):
            if cls[i] == OP and not absorbed[i]:
                used_const.update(c for c in operands(i) if cls[c] == CONST)
        used_const.update(i for i in out_idx if cls[i] == CONST)
        const_nodes = sorted(used_const)
        slot[const_nodes] = np.arange(n_leaf, n_leaf + len(const_nodes))
        self.n_params, self.n_inputs = n_params, len(inputs)
        self.const_start = n_leaf
        self.consts = np.array([data[i] for i in const_nodes], dtype=float)
        next_slot = n_leaf + len(const_nodes)

        # Which slots depend on a parameter: backward skips every part that reaches none.
        needs_slot = np.zeros(next_slot + sum(len(g) for g in groups.values()), dtype=bool)
        needs_slot[:n_params] = True

        self.kernels = []
        for key in sorted(groups, key=lambda k: (k[0], k[1], k[2], k[3])):
            members = groups[key]
            start = next_slot
            if key[1] == "+":
                n_plain, n_prod = key[2], key[3]
                plain = np.array([sums[i][0] for i in members], dtype=np.intp) if n_plain else None
                a = np.array([[x for x, _ in sums[i][1]] for i in members], dtype=np.intp) if n_prod else None
                b = np.array([[y for _, y in sums[i][1]] for i in members], dtype=np.intp) if n_prod else None
                grid = None
                if n_prod:
                    factored = _factor(a, b)
                    if factored is not None:
                        perm, a, b = factored
                        members = [members[r] for r in perm]
                        grid = (len(b), len(a))
                        if plain is not None:
                            plain = plain[perm].reshape(grid + (n_plain,))
                for nodes in (a, b, plain):
                    if nodes is not None:
                        place_params(nodes)
                slot[members] = np.arange(start, start + len(members))
                kernel = _SumDot(start, start + len(members), None if plain is None else slot[plain],
                                 None if a is None else slot[a], None if b is None else slot[b], grid, needs_slot)
            else:
                arity = len(kids[members[0]])
                ins = [np.array([kids[i][p] for i in members], dtype=np.intp) for p in range(arity)]
                for nodes in ins:
                    place_params(nodes)
                k = [order[i]._arg for i in members] if PRIMITIVES[key[1]].kind == 3 else None
                slot[members] = np.arange(start, start + len(members))
                kernel = _Elementwise(key[1], start, start + len(members), [slot[x] for x in ins], k, needs_slot)
            for i in members:
                needs_slot[slot[i]] = any(needs_slot[slot[c]] for c in operands(i))
            next_slot = start + len(members)
            self.kernels.append(kernel)
        place_params(np.arange(n))      # parameters no group reads (an output that is a parameter)
        self.params = [None] * n_params
        for i in np.flatnonzero(is_param):
            self.params[slot[i]] = order[i]
        self.n_slots = next_slot
        self.out_slots = [int(slot[i]) for i in out_idx]
        self.eager = np.empty(self.n_slots)
        has_slot = slot >= 0
        self.eager[slot[has_slot]] = np.array(data)[has_slot]
        self.n_nodes = n
        self.n_fused = sum(absorbed)


class _Buffer:
    """One slot buffer with every kernel bound to it (views made once, reused at every replay)."""

    def __init__(self, program: _Program, grad: np.ndarray):
        self.vals = np.empty(program.n_slots)
        c = program.const_start
        self.vals[c:c + len(program.consts)] = program.consts
        bound = [k.bind(self.vals, grad) for k in program.kernels]
        self.forward = [f for f, _ in bound]
        self.backward = [b for _, b in reversed(bound) if b is not None]


class _Run:
    """The state one call's results share; gives its buffer back when the last result is gone."""

    __slots__ = ("owner", "buffer")

    def __init__(self, owner: "Compiled", buffer: _Buffer):
        self.owner, self.buffer = owner, buffer

    def __del__(self):
        self.owner._free.append(self.buffer)


class ReplayValue:
    """One output of a compiled call: ``.data`` is its number, ``backward()`` adds into the captured
    parameters' ``.grad`` exactly as the eager ``Value.backward()`` would.

    It is not a Value: arithmetic on it would build a graph the replay cannot see, so it is refused.
    """

    __slots__ = ("data", "grad", "label", "_run", "_slot")

    def __init__(self, data: float, run: _Run, slot: int):
        self.data, self.grad, self.label, self._run, self._slot = data, 0.0, "", run, slot

    def backward(self) -> None:
        """Run the recorded backward pass from this output (gradients accumulate, like ``Value.backward``)."""
        self._run.owner._backward(self._run.buffer, self._slot)
        self.grad = 1.0

    def __float__(self) -> float:
        return self.data

    def __repr__(self) -> str:
        return f"ReplayValue(data={self.data:.4f})"


class Compiled:
    """A function recorded on its first call and replayed with numpy afterwards; see :func:`compile`."""

    def __init__(self, fn: Callable):
        if not callable(fn):
            raise TypeError(f"compile needs a function or model to call, got {type(fn).__name__}")
        self.fn = fn
        self._program: _Program | None = None
        self._specs = None
        self._out_tree = None
        self._free: list[_Buffer] = []
        self._grad = None

    def __repr__(self) -> str:
        name = getattr(self.fn, "__name__", type(self.fn).__name__)
        p = self._program
        if p is None:
            return f"Compiled({name}, not recorded yet)"
        return (f"Compiled({name}: {p.n_nodes} nodes -> {len(p.kernels)} groups, {p.n_slots} slots, "
                f"{p.n_params} parameters)")

    @property
    def n_groups(self) -> int:
        """How many numpy operations one forward replay runs (0 before the first call)."""
        return 0 if self._program is None else len(self._program.kernels)

    def _results(self, run: _Run, tree=None):
        # Plain recursion, not a nested function: a closure that calls itself is a reference cycle,
        # which would keep the run (and its buffer) alive until the cycle collector happens by.
        tree = self._out_tree if tree is None else tree
        if isinstance(tree, int):
            s = self._program.out_slots[tree]
            return ReplayValue(float(run.buffer.vals[s]), run, s)
        return type(tree)(self._results(run, t) for t in tree)

    def _take_buffer(self) -> _Buffer:
        return self._free.pop() if self._free else _Buffer(self._program, self._grad)

    def _record(self, args):
        self._specs = [_spec(a, f"argument {i}") for i, a in enumerate(args)]
        # type() rather than isinstance(): some modules' objects run code when asked for __class__.
        existing = {id(o) for o in gc.get_objects() if issubclass(type(o), Value)}
        inputs: list[Value] = []
        converted = [_make_values(s, a, inputs) for s, a in zip(self._specs, args)]
        with _grad_enabled():
            out = self.fn(*converted)
        roots: list[Value] = []
        self._out_tree = _flatten_outputs(out, roots)
        self._program = _Program(roots, inputs, existing)
        self._grad = np.zeros(self._program.n_slots)
        buffer = self._take_buffer()
        buffer.vals[:] = self._program.eager
        return self._results(_Run(self, buffer))

    def _feed(self, spec, x, vals, offset: int, where: str, batch: int | None = None) -> int:
        kind, payload = spec
        if kind == "float":
            if type(x) is np.ndarray and x.dtype.kind in "fiu":
                a = x
            else:
                try:
                    a = np.asarray(x, dtype=float)
                except (ValueError, TypeError):
                    raise ReplayMismatchError(f"{where}: recorded floats of shape {payload}, got "
                                              f"{type(x).__name__} that is not a regular array") from None
            shape = a.shape if batch is None else a.shape[1:]
            if shape != payload or (batch is not None and a.shape[0] != batch):
                got = a.shape if batch is None else f"{a.shape} (expected ({batch}, ...) for a batch)"
                raise ReplayMismatchError(f"{where}: recorded floats of shape {payload}, got shape {got}")
            size = a.size if batch is None else a.size // max(batch, 1)
            if batch is None:
                vals[offset:offset + size] = a.reshape(-1)
            else:
                vals[offset:offset + size] = a.reshape(batch, size).T
            return offset + size
        if batch is not None:
            raise ReplayMismatchError(f"{where}: batch() takes float arrays with one row per example; "
                                      f"this argument was recorded as {_describe(spec)}")
        if kind == "seq":
            if not isinstance(x, (list, tuple)) or len(x) != len(payload):
                raise ReplayMismatchError(_spec_difference(spec, _spec(x, where), where)
                                          or f"{where}: structure differs from the recording")
            for i, (s, item) in enumerate(zip(payload, x)):
                offset = self._feed(s, item, vals, offset, f"{where}[{i}]")
            return offset
        diff = _spec_difference(spec, _spec(x, where), where)
        if diff:
            raise ReplayMismatchError(diff)
        return offset

    def __call__(self, *args):
        p = self._program
        if p is None:
            return self._record(args)
        if len(args) != len(self._specs):
            raise ReplayMismatchError(f"recorded with {len(self._specs)} arguments, called with {len(args)}")
        buffer = self._take_buffer()
        run = _Run(self, buffer)        # gives the buffer back if feeding fails
        vals = buffer.vals
        offset = p.n_params
        for i, (spec, x) in enumerate(zip(self._specs, args)):
            offset = self._feed(spec, x, vals, offset, f"argument {i}")
        vals[:p.n_params] = np.fromiter(map(_get_data, p.params), float, p.n_params)
        with np.errstate(all="ignore"):
            for forward in buffer.forward:
                forward()
        return self._results(run)

    def _backward(self, buffer: _Buffer, slot: int) -> None:
        grad = self._grad
        grad.fill(0.0)
        grad[slot] = 1.0
        with np.errstate(all="ignore"):
            for backward in buffer.backward:
                backward()
        for param, g in zip(self._program.params, grad[:self._program.n_params].tolist()):
            param.grad += g

    def batch(self, *args, chunk: int = 4096) -> np.ndarray:
        """Evaluate a function recorded on ONE example on a batch: each argument gains a leading axis.

        Returns an array of shape ``(N,) + output shape`` (``(N,)`` for one Value). Records on the
        first example if nothing was recorded yet. Forward only: use ``__call__`` to train.

        >>> import random
        >>> from chainrule import MLP, compile
        >>> random.seed(0)
        >>> model = MLP(2, [3, 2])
        >>> out = compile(model).batch([[1.0, 2.0], [0.5, 0.0], [3.0, -1.0]])
        >>> out.shape, bool(abs(out[2, 1] - model([3.0, -1.0])[1].data) < 1e-12)
        ((3, 2), True)
        """
        arrays = [np.asarray(a, dtype=float) for a in args]
        if not arrays or any(a.ndim == 0 for a in arrays):
            raise ValueError("batch() takes one array per argument, with one row per example")
        n = arrays[0].shape[0]
        if any(a.shape[0] != n for a in arrays):
            raise ValueError(f"batch() arguments must have the same number of rows, got "
                             f"{[a.shape[0] for a in arrays]}")
        if self._program is None:
            if n == 0:
                raise ValueError("batch() needs at least one example to record on")
            self._record([a[0] for a in arrays])
        p = self._program
        if len(arrays) != len(self._specs):
            raise ReplayMismatchError(f"recorded with {len(self._specs)} arguments, batch() got {len(arrays)}")
        params = np.array(list(map(_get_data, p.params)), dtype=float)
        results = []
        step = max(1, min(chunk, (1 << 23) // max(p.n_slots, 1)))
        for lo in range(0, n, step):
            hi = min(n, lo + step)
            vals = np.empty((p.n_slots, hi - lo))
            vals[:p.n_params] = params[:, None]
            c = p.const_start
            vals[c:c + len(p.consts)] = p.consts[:, None]
            offset = p.n_params
            for i, (spec, a) in enumerate(zip(self._specs, arrays)):
                offset = self._feed(spec, a[lo:hi], vals, offset, f"argument {i}", batch=hi - lo)
            with np.errstate(all="ignore"):
                for kernel in p.kernels:
                    kernel.bind(vals, None)[0]()
            results.append(vals[p.out_slots].T)
        out = np.concatenate(results) if results else np.empty((0, len(p.out_slots)))
        try:
            return out.reshape((n,) + _tree_shape(self._out_tree))
        except ValueError:
            return out


def _tree_shape(tree) -> tuple:
    """The shape of a rectangular nested list of ints (raises ValueError when ragged)."""
    if isinstance(tree, int):
        return ()
    shapes = {_tree_shape(t) for t in tree}
    if len(shapes) > 1:
        raise ValueError("ragged")
    return (len(tree),) + (shapes.pop() if shapes else ())


def compile(fn: Callable) -> Compiled:
    """Record ``fn``'s graph on its first call, replay it vectorised with numpy on later calls.

    ``fn`` takes numbers, lists or numpy arrays and returns a Value (or a nested list of Values).
    The result of each call mirrors that: :class:`ReplayValue` objects whose ``.data`` is the number
    and whose ``backward()`` adds into the ``.grad`` of the Values ``fn`` captured (the model's
    parameters), so a normal training loop runs unchanged. See the module docstring for what is
    recorded, what is baked in, and when :class:`ReplayMismatchError` is raised.

    >>> import random
    >>> from chainrule import MLP, compile
    >>> random.seed(0)
    >>> model = MLP(2, [4, 1])
    >>> step = compile(lambda x, y: (model(x) - y) ** 2)
    >>> for _ in range(3):
    ...     loss = step([1.0, -2.0], 0.5)
    ...     model.zero_grad(); loss.backward()
    ...     for p in model.parameters():
    ...         p.data -= 0.1 * p.grad
    >>> step([1.0, -2.0, 3.0], 0.5)
    Traceback (most recent call last):
    ...
    chainrule.replay.ReplayMismatchError: argument 0: recorded floats of shape (2,), got shape (3,)
    """
    return Compiled(fn)
