"""Stage 3, kernels: the numpy operations a replay runs, one per group of same-shaped nodes.

Two buffers hold a replay's numbers: ``S`` for shared nodes (one number each: live Values,
constants, ops on them only) and ``E`` for per-example nodes (one row each; in a batched replay a
row holds one number per example, the batch being the trailing axis). Each has a gradient twin,
``gS`` and ``gE``. A kernel reads its operands from either buffer through a :class:`Ref` and writes
its results into a contiguous range of one of them.

:class:`Elementwise` applies a row of the engine's table (``PRIMITIVES[name].forward`` and
``.backward``) to whole arrays through the ``ARRAY`` namespace, so a user-registered primitive
replays too. :class:`SumDot` is a fused chain of additions with the products in it (the ``+``
rule passes ``g`` to every term; the ``*`` rule gives ``a`` the term ``g * b``): when the products
form a grid (every neuron of a layer times the same inputs) it is one matrix product, with the
weights as a matrix read once, never copied per example.

Where the array code would differ from eager's floats (a non-finite number anywhere in an
elementwise kernel's inputs or results), the element is recomputed with the scalar rule: that
raises the eager error (``exp`` overflowing, ``log(0)``) or gives the eager number (``relu(nan)``).
Each kernel's ``forward(check)`` and ``backward(check)`` look for such numbers when ``check`` is
true. The replay (run.py) usually passes False and looks once, over the whole buffers, afterwards:
a buffer in which every number is finite had nothing to recompute (in backward, a kernel's
results are added into gradients, and a nan or inf added in stays; only terms that are not added
anywhere are checked by the kernel itself). Only if some number is not finite does the replay run
the kernels again with ``check=True``. A :class:`SumDot`'s ``+`` and ``*`` give what floats give
(inf and nan, never an error), so it has nothing to check.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ..engine import ARRAY, PRIMITIVES, SCALAR
from ..primitives import BUILTIN

__all__ = ["Elementwise", "Index", "Ref", "SumDot"]

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


def _distinct(shape: tuple, strides: tuple) -> bool:
    """Whether ``base + sum(i_d * strides_d)`` over ``shape`` never repeats, seen from the strides
    alone: sorted by stride, each must step past everything the smaller ones reach (a matrix's
    rows and columns). False means "not shown", not "repeats"."""
    reach = 0
    for s, n in sorted((s, n) for s, n in zip(strides, shape) if n > 1):
        if s <= reach:
            return False
        reach += s * (n - 1)
    return True


def _strided(buf: np.ndarray, base: int, shape: tuple, strides: tuple) -> np.ndarray:
    """A view of rows ``base + sum(i_d * strides_d)`` of ``buf`` (rows may carry a batch axis)."""
    if len(shape) == 1 and strides[0] == 1:
        return buf[base:base + shape[0]]
    row = buf.strides[0]
    return np.lib.stride_tricks.as_strided(
        buf[base:], shape=tuple(shape) + buf.shape[1:],
        strides=tuple(s * row for s in strides) + buf.strides[1:])


def _full(term, shape: tuple):
    """``term`` broadcast to ``shape``; np.broadcast_to (a few microseconds) only where it is needed."""
    return term if getattr(term, "shape", None) == shape else np.broadcast_to(term, shape)


class Index:
    """One index array into a buffer, with the cheapest way to read it and to add into it."""

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

    def rows(self, buf: np.ndarray):
        """The rows of ``buf`` this index names, as one writable view, if they are distinct and
        evenly spaced (a layer's weights); else None."""
        if self.affine is None or not _distinct(self.shape, self.affine[1]):
            return None
        return _strided(buf, self.affine[0], self.shape, self.affine[1])

    def _plan_scatter(self):
        if self.affine is not None:
            base, strides = self.affine
            # Axes along which the index does not move (a bias shared by every neuron) are summed
            # first; what is left is a view if it does not overlap itself.
            summed = tuple(d for d, s in enumerate(strides) if s == 0 and self.shape[d] > 1)
            kept = tuple(1 if d in summed else n for d, n in enumerate(self.shape))
            if _distinct(kept, strides) or len(np.unique(self.idx)) == int(np.prod(kept)):
                return ("view", base, kept, strides, summed)
        uniq, inverse = np.unique(self.idx, return_inverse=True)
        if len(uniq) == self.idx.size:
            return ("fancy", self.idx.ravel())
        return ("repeat", uniq, inverse.ravel())

    def adder(self, grad: np.ndarray) -> Callable[[np.ndarray], None]:
        """``add(term)`` does ``grad[idx] += term``, repeated indices summed (a scatter-add)."""
        if self._scatter is None:
            self._scatter = self._plan_scatter()
        batch = grad.shape[1:]
        full = self.shape + batch
        kind = self._scatter[0]
        if kind == "view":
            _, base, kept, strides, summed = self._scatter
            view = _strided(grad, base, kept, strides)

            def add(term):
                if summed:
                    term = np.add.reduce(_full(term, full), axis=summed, keepdims=True)
                view.__iadd__(term)
            return _first_axis_adder(view, full, kept, add) if summed == (0,) and not batch else add
        if kind == "fancy":
            flat = self._scatter[1]

            def add(term):
                grad[flat] += _full(term, full).reshape((-1,) + batch)
            return add
        uniq, inverse = self._scatter[1], self._scatter[2]
        size = len(uniq)

        def add(term):
            term = _full(term, full).reshape((-1,) + batch)
            if not batch:
                grad[uniq] += np.bincount(inverse, term, size)
                return
            sums = np.zeros((size,) + batch)
            np.add.at(sums, inverse, term)
            grad[uniq] += sums
        return add


def _first_axis_adder(view: np.ndarray, full: tuple, kept: tuple, reduce_add: Callable) -> Callable:
    """``view += term.sum(axis=0)``: a bias that every example of a compiled call shares gains the
    sum of their terms. A term of the full shape is summed as a product with a vector of ones, one
    BLAS call that takes a quarter of ``np.add.reduce``'s time on (100, 16); anything else (a
    float: a rule's constant slope, select's 0.0 for its condition) goes to ``reduce_add``. Both
    add the same numbers in another order than eager's one by one, so they agree with it to
    rounding, not bit for bit (a 1 times each term is exact, so nan and inf come out as a sum
    gives them)."""
    ones, rest = np.ones(full[0]), math.prod(full[1:])

    def add(term):
        if getattr(term, "shape", None) == full:        # (reshape copies a term that is not contiguous)
            view.__iadd__(np.dot(ones, term.reshape(full[0], rest)).reshape(kept))
        else:
            reduce_add(term)
    return add


class Ref:
    """Operand nodes of a kernel: an :class:`Index` into the shared buffer or the per-example one."""

    def __init__(self, example: bool, idx):
        self.example = example
        self.index = Index(idx)

    @property
    def shape(self) -> tuple:
        return self.index.shape

    def reader(self, bufs: tuple, batched: bool, raw: bool = False):
        """Read the operand; in a batched kernel a shared operand gains a length-1 batch axis
        (broadcast, not copied) unless ``raw``."""
        S, E = bufs
        read = self.index.reader(E if self.example else S)
        if batched and not self.example and not raw:
            return lambda: read()[..., None]
        return read

    def adder(self, gbufs: tuple, batched: bool, raw: bool = False):
        """Add a term into the operand's gradient; into a shared operand from a batched kernel the
        term is first summed over the batch (unless ``raw``: the term is summed already)."""
        gS, gE = gbufs
        if self.example:
            return self.index.adder(gE)
        add = self.index.adder(gS)
        if not batched or raw:
            return add
        shape = self.shape

        def add_summed(term):
            if term.shape[:-1] != shape:
                term = np.broadcast_to(term, shape + term.shape[-1:])
            add(term.sum(axis=-1))
        return add_summed


def _buffers(bufs: tuple, example: bool) -> np.ndarray:
    return bufs[1] if example else bufs[0]


# --- numbers the array code would get differently from eager floats -----------------------------

def _all_finite(*arrays) -> bool:
    # One reduction per array: a sum is finite only if every element is (a sum that overflows is a
    # false alarm, which only sends the kernel down the exact, slower path).
    return math.isfinite(sum(float(np.add.reduce(a, axis=None)) for a in arrays))


def _settle(results: list, scalar: Callable, operands: list) -> None:
    """Recompute with ``scalar`` every element where a result or an operand is not finite,
    writing the scalar results into ``results`` (full, writable arrays). Scalar errors propagate."""
    shape = results[0].shape
    ops = [np.broadcast_to(o, shape) for o in operands]
    bad = np.zeros(shape, dtype=bool)
    for a in results + ops:
        bad |= ~np.isfinite(np.broadcast_to(a, shape))
    for i in np.flatnonzero(bad):
        got = scalar(*(float(o.flat[i]) for o in ops))
        for r, x in zip(results, got):
            r.flat[i] = x


# --- the kernels ---------------------------------------------------------------------------------

class Elementwise:
    """Every node of one primitive at one depth: the table's rule applied to whole arrays."""

    def __init__(self, prim, example: bool, start: int, stop: int, refs: list, k, needs: list, reach: int):
        self.prim, self.example, self.start, self.stop = prim, example, start, stop
        self.refs, self.needs, self.reach = refs, needs, reach
        self.k = None if k is None else np.asarray(k, dtype=float)

    def backward_terms(self) -> list:
        """``(ref, needs)`` of each term backward adds, in the order it adds them."""
        return list(zip(self.refs, self.needs))

    def bind(self, bufs: tuple, gbufs: tuple):
        prim = self.prim
        fwd, bwd = prim.forward, prim.backward
        batched = self.example and bufs[1].ndim == 2
        readers = [r.reader(bufs, batched) for r in self.refs]
        # Operands that are rows of a buffer (a view) are the same arrays at every call: read once.
        fixed = [read() for read in readers] if all(r.index.affine is not None for r in self.refs) else None
        extra = () if self.k is None else (self.k[:, None] if batched else self.k,)
        out = _buffers(bufs, self.example)[self.start:self.stop]

        def scalar_forward(*xs):
            return (fwd(SCALAR, *xs),)

        def forward(check: bool = True):
            ins = fixed if fixed is not None else [r() for r in readers]
            out[...] = fwd(ARRAY, *ins, *extra)
            if check and not _all_finite(out, *ins):
                _settle([out], scalar_forward, ins + list(extra))
        if not any(self.needs):
            return forward, None
        g = _buffers(gbufs, self.example)[self.start:self.stop]
        adders = [r.adder(gbufs, batched) if need else None for r, need in zip(self.refs, self.needs)]
        # A term that nothing adds matters only if the scalar rule would raise for it: a built-in
        # rule never does (its backward is written with the IEEE functions), a user's rule might.
        unused = [i for i, need in enumerate(self.needs) if not need] if prim.name not in BUILTIN else []

        def scalar_backward(*xs):
            return bwd(SCALAR, *xs)

        def backward(check: bool = True):
            ins = fixed if fixed is not None else [r() for r in readers]
            terms = list(bwd(ARRAY, g, out, *ins, *extra))
            if check:
                exact = _all_finite(g, out, *ins, *terms)
            else:           # the caller checks everything else; a term added nowhere it cannot see
                exact = not unused or _all_finite(*[terms[i] for i in unused])
            if not exact:
                terms = [np.array(np.broadcast_to(t, out.shape), dtype=float) for t in terms]
                _settle(terms, scalar_backward, [g, out] + ins + list(extra))
            for add, term in zip(adders, terms):
                if add is not None:
                    add(term)
        return forward, backward


class SumDot:
    """Every ``p0 + p1 + ... + a0*b0 + a1*b1 + ...`` with the same shape of terms at one depth.

    ``plains`` are ``(ref, needs)`` of shape (members, terms); ``dots`` are ``(a, b, needs_a,
    needs_b)`` of shape (members, products); ``grid``, if not None, is ``(a, b, needs_a, needs_b)``
    where member ``i * n_a + j`` is the dot product of row j of ``a`` (shared) and row i of ``b``:
    a matrix product (and then ``plains`` have shape (n_b, n_a, terms)).
    """

    def __init__(self, example: bool, start: int, stop: int, plains: list, dots: list, grid, reach: int):
        self.example, self.start, self.stop = example, start, stop
        self.plains, self.dots, self.grid, self.reach = plains, dots, grid, reach
        # Set by the planner: the grid's operands whose gradient rows nothing writes before this
        # kernel's product does in backward. The product then writes them directly (they are still
        # zero), which spares a temporary the size of the weights and a pass adding it.
        self.writes_first = (False, False)

    def backward_terms(self) -> list:
        """``(ref, needs)`` of each term backward adds, in the order it adds them: the plain parts,
        each product's two factors, then the grid's A and B (the planner's first writers rely on
        this order, and on the grid's two coming last)."""
        terms = [(r, need) for r, need in self.plains]
        terms += [(r, need) for a, b, na, nb in self.dots for r, need in ((a, na), (b, nb))]
        if self.grid is not None:
            terms += [(self.grid[0], self.grid[2]), (self.grid[1], self.grid[3])]
        return terms

    def bind(self, bufs: tuple, gbufs: tuple):
        batched = self.example and bufs[1].ndim == 2
        out = _buffers(bufs, self.example)[self.start:self.stop]
        dots = [(a.reader(bufs, batched), b.reader(bufs, batched), a.shape[-1] == 1) for a, b, _, _ in self.dots]
        grid = self.grid
        target, axis = out, 1                  # where plain terms go, and their terms' axis
        if grid is not None:
            ga, gb = grid[0], grid[1]
            n_a, n_b = ga.shape[0], gb.shape[0]
            read_A, read_B = ga.reader(bufs, batched, raw=True), gb.reader(bufs, batched, raw=True)
            out_m = out.reshape((n_b, n_a) + out.shape[1:])
            per_example_a = ga.example and batched
            target, axis = out_m, 2             # plain terms come in the grid's shape
        first = (slice(None),) * axis + (0,)    # the first term of each member (the batch axis comes after)
        # Each plain part: (its term if it is the same array at every call, else None; its reader;
        # whether it has one term). A part of one term that is a view of a buffer (a bias) is fixed.
        plains = []
        for r, _ in self.plains:
            read, single = r.reader(bufs, batched), r.shape[-1] == 1
            plains.append((read()[first] if single and r.index.affine is not None else None, read, single))

        def forward(check: bool = True):           # nothing to check: + and * as floats do them
            if grid is None:
                out[...] = 0.0
            elif not batched:
                np.matmul(read_B(), read_A().T, out=out_m)
            elif not per_example_a and n_b == 1:
                np.matmul(read_A(), read_B()[0], out=out_m[0])   # (n_a, k) @ (k, z): one BLAS call
            elif not per_example_a:
                np.matmul(read_A(), read_B(), out=out_m)     # (n_a, k) @ (n_b, k, z): one BLAS call per b-row
            else:
                out_m[...] = np.einsum("akz,bkz->baz", read_A(), read_B())
            # A part of one term is added as it is, without a reduction: into the matrix product
            # or into 0.0, which the sum of that one term would give too (0.0 + -0.0 is 0.0).
            for term, read, single in plains:
                target.__iadd__(term if term is not None else read()[first] if single else read().sum(axis=axis))
            for read_a, read_b, single in dots:
                out.__iadd__((read_a() * read_b())[:, 0] if single else (read_a() * read_b()).sum(axis=1))

        needs_any = any(n for _, n in self.plains) or any(na or nb for _, _, na, nb in self.dots) \
            or (grid is not None and (grid[2] or grid[3]))
        if not needs_any:
            return forward, None
        g = _buffers(gbufs, self.example)[self.start:self.stop]
        plain_adds = [r.adder(gbufs, batched) for r, need in self.plains if need]
        dot_parts = [(read_a, read_b, a.adder(gbufs, batched) if na else None, b.adder(gbufs, batched) if nb else None)
                     for (read_a, read_b, _), (a, b, na, nb) in zip(dots, self.dots) if na or nb]
        if grid is not None:
            add_A = ga.adder(gbufs, batched, raw=True) if grid[2] else None
            add_B = gb.adder(gbufs, batched, raw=True) if grid[3] else None
            g_m = g.reshape((n_b, n_a) + g.shape[1:])
            g_T = g_m.T
            # The shapes below that write a product straight into its operand's gradient rows.
            direct = not batched or (not per_example_a and n_b == 1 and gb.example)
            into_A = ga.index.rows(_buffers(gbufs, ga.example)) if direct and add_A and self.writes_first[0] else None
            into_B = gb.index.rows(_buffers(gbufs, gb.example)) if direct and add_B and self.writes_first[1] else None

        g_col = g[:, None]
        g_plain = g_col if grid is None else g_m[:, :, None]

        def backward(check: bool = True):
            for add in plain_adds:                      # the '+' rule: every term gains g
                add(g_plain)
            for read_a, read_b, add_a, add_b in dot_parts:
                term_a, term_b = _MUL.backward(ARRAY, g_col, None, read_a(), read_b())
                if add_a is not None:
                    add_a(term_a)
                if add_b is not None:
                    add_b(term_b)
            if grid is None:
                return
            # The '*' rule summed over the members that share an operand: matrix products, the
            # batch summed inside them for the shared weights.
            if not batched:
                if into_A is not None:
                    np.matmul(g_T, read_B(), out=into_A)
                elif add_A is not None:
                    add_A(g_T @ read_B())
                if into_B is not None:
                    np.matmul(g_m, read_A(), out=into_B)
                elif add_B is not None:
                    add_B(g_m @ read_A())
            elif not per_example_a and n_b == 1:
                if into_A is not None:
                    np.matmul(g_m[0], read_B()[0].T, out=into_A)   # (n_a, z) @ (z, k): the batch summed inside
                elif add_A is not None:
                    add_A(g_m[0] @ read_B()[0].T)
                if into_B is not None:
                    np.matmul(read_A().T, g_m[0], out=into_B[0])
                elif add_B is not None:
                    add_B((read_A().T @ g_m[0])[None])
            elif not per_example_a:
                if add_A is not None:
                    add_A(np.tensordot(g_m, read_B(), axes=([0, 2], [0, 2])))
                if add_B is not None:
                    add_B(np.matmul(read_A().T, g_m))
            else:
                if add_A is not None:
                    add_A(np.einsum("baz,bkz->akz", g_m, read_B()))
                if add_B is not None:
                    add_B(np.einsum("baz,akz->bkz", g_m, read_A()))
        return forward, backward
