"""Stage 4, run: feed the arguments, run the kernels forward and backward, hand back results.

:class:`Compiled` (``compile(fn)``) replays a whole call: every call's arguments fill the inputs.
:class:`Batched` (``vmap(fn)``) replays a function of ONE example over a batch: the per-example
buffer gains a trailing batch axis, shared nodes (the weights, an L2 penalty) are computed once,
and the loss is reduced over the batch. Both give gradients to the Values ``fn`` captured exactly as
eager ``backward()`` does; ``Batched.value_and_grad(params)`` gives them as one array instead.

Each call's results keep their own buffers (numbers and gradients), so results of two calls, or
of two threads, never share one; adding into Values' ``.grad`` holds one lock.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from ..engine import Value, collector_paused, topological_order
from ..mathspace import floats_into
from ..primitives import BUILTIN
from . import args as A
from .errors import ReplayMismatchError
from .kernels import _all_finite
from .plan import Program, plan
from .record import record

__all__ = ["Compiled", "ReplayValue"]

_GRAD_LOCK = threading.Lock()          # one writer at a time into Values' .grad


class _Buffer:
    """The numbers and gradients of one call, with every kernel bound to them once."""

    def __init__(self, program: Program, batch: int | None):
        e_shape = (program.n_E,) if batch is None else (program.n_E, batch)
        # S and E are two views of one array (E starting on a 64-byte line), and so are gS and gE:
        # one reduction looks at every number of a pass, one fill clears every gradient.
        at = -(-program.n_S // 8) * 8
        self.numbers, self.grads = np.zeros(at + math.prod(e_shape)), np.zeros(at + math.prod(e_shape))
        self.S, self.E = self.numbers[:program.n_S], self.numbers[at:].reshape(e_shape)
        self.gS, self.gE = self.grads[:program.n_S], self.grads[at:].reshape(e_shape)
        c = program.n_live
        self.S[c:c + len(program.consts)] = program.consts
        bound = [(k.reach, k.bind((self.S, self.E), (self.gS, self.gE))) for k in program.kernels]
        self.forward = [f for _, (f, _) in bound]
        self.backward = [(reach, b) for reach, (_, b) in reversed(bound) if b is not None]
        self.lock = threading.Lock()
        self.batch = batch
        self.kernels = program.kernels
        self.finite = False          # whether the last forward left every number in S and E finite

    # Both passes first run the kernels without their checks for numbers that are not finite and
    # then look at the whole buffers, two reductions instead of a few per kernel: if every number
    # is finite, no kernel had anything to recompute (kernels.py says why). Otherwise, or if a
    # kernel failed, they run again with the checks, which recompute exactly what they did before
    # (each kernel writes only its own rows, from rows that the pass does not change).

    def run_forward(self) -> None:
        self.finite = False
        with np.errstate(all="ignore"), _naming_user_rules(self.kernels):
            try:
                for forward in self.forward:
                    forward(False)
                finite = _all_finite(self.numbers)
            except Exception:           # the checked pass below raises it, or eager's error first
                finite = False
            if not finite:
                for forward in self.forward:
                    forward(True)
        self.finite = finite

    def run_backward(self, program: Program, out: int, seed: float, copy: bool = True) -> np.ndarray:
        """Gradients of the live Values (by slot) from output ``out`` seeded with ``seed`` (with
        ``copy=False``, a view of this buffer, valid while the caller holds it)."""
        bit = 1 << out
        with np.errstate(all="ignore"), _naming_user_rules(self.kernels):
            done = False
            if self.finite:             # the forward's numbers are all finite: check the gradients only
                try:
                    self._seed(program, out, seed)
                    for reach, backward in self.backward:
                        if reach & bit:
                            backward(False)
                    done = _all_finite(self.grads)
                except Exception:
                    done = False
            if not done:
                self._seed(program, out, seed)
                for reach, backward in self.backward:
                    if reach & bit:
                        backward(True)
        return self.gS[:program.n_live].copy() if copy else self.gS[:program.n_live]

    def _seed(self, program: Program, out: int, seed: float) -> None:
        self.grads.fill(0.0)
        example, s = program.outs[out]
        (self.gE if example else self.gS)[s] += seed


class _naming_user_rules:
    """A rule added with chainrule.primitive that works on floats but not on arrays (a Python ``if``
    on its input, ``math.*``) fails inside numpy with a message that names nothing of the user's:
    say which op it is and how to write it. Errors of the built-in rules pass unchanged. (A class,
    not a generator: it wraps every pass, and a generator's context costs a few microseconds.)"""

    __slots__ = ("kernels",)

    def __init__(self, kernels):
        self.kernels = kernels

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, e, tb) -> bool:
        if e is None or not isinstance(e, (TypeError, ValueError)):
            return False
        if not isinstance(e, TypeError) and "truth value" not in str(e):
            return False
        users = sorted({k.prim.name for k in self.kernels if getattr(k, "prim", None) is not None
                        and k.prim.name not in BUILTIN})
        if not users:
            return False
        raise TypeError(f"the replay could not run the rule of {', '.join(map(repr, users))} on arrays ({e}): "
                        f"write its forward and backward with m's functions and arithmetic only, m.where(...) "
                        f"for a choice instead of a Python if, so that they run on arrays too") from None


class _Run:
    """What one call's results share; returns the buffer to its owner when the last one is gone."""

    __slots__ = ("owner", "buffer", "seed")

    def __init__(self, owner, buffer: _Buffer, seed: float = 1.0):
        self.owner, self.buffer, self.seed = owner, buffer, seed

    def __del__(self):
        self.owner._give_back(self.buffer)


class ReplayValue:
    """One output of a compiled call: ``.data`` is its number, ``backward()`` adds into the captured
    Values' ``.grad`` exactly as eager ``Value.backward()`` would.

    It is not a Value: arithmetic on it would build a graph the replay cannot see, so it is refused.
    """

    __slots__ = ("data", "grad", "label", "_run", "_out")

    def __init__(self, data: float, run: _Run, out: int):
        self.data, self.grad, self.label, self._run, self._out = data, 0.0, "", run, out

    def backward(self) -> None:
        """Run the recorded backward pass from this output (gradients accumulate, like ``Value.backward``)."""
        run = self._run
        with run.buffer.lock:
            grads = run.buffer.run_backward(run.owner._program, self._out, run.seed)
        run.owner._add_into_values(self._out, grads)
        self.grad = 1.0

    def __float__(self) -> float:
        return self.data

    def __repr__(self) -> str:
        return f"ReplayValue(data={self.data:.4f})"

    def _no_arithmetic(self, *other):
        raise TypeError("a compiled function's result is a ReplayValue, not a Value: arithmetic on it would "
                        "build nothing the replay can run backward. Do the arithmetic inside the compiled "
                        "function, or use .data for the number")

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _no_arithmetic
    __truediv__ = __rtruediv__ = __pow__ = __rpow__ = __neg__ = _no_arithmetic


def _below(values: list) -> list:
    """``values`` and every Value they were made from, each after its inputs: one walk from a
    stand-in node whose inputs are all of them (the stand-in itself dropped)."""
    return topological_order(Value(0.0, tuple(values)))[:-1]


def _continue_below(values: list, grads: list) -> None:
    """Eager backward's chain rule through the Values made by ops before the call (``w3 = w * 3``):
    their gradient from the replay continues into the graph below them, node by node, as eager."""
    order = _below(values)
    for node in order:
        if node._prev:
            node.grad = 0.0                # eager backward resets interior nodes first
    for v, g in zip(values, grads):
        v.grad += g
    for node in reversed(order):
        if node._prev:
            node._backward()


class _Replay:
    """What compile and vmap share: the recording, buffers, and writing gradients into Values."""

    def __init__(self, fn, checks: int):
        if not callable(fn):
            raise TypeError(f"compile needs a function or model to call, got {type(fn).__name__}")
        if isinstance(checks, bool) or not isinstance(checks, int) or checks < 0:
            raise ValueError(f"checks must be a whole number >= 0, got {checks!r}")
        self.fn, self.checks = fn, checks
        self._program: Program | None = None
        self._free: dict = {}
        self._lock = threading.Lock()
        self._targets: dict[int, tuple] = {}
        self._structure = None

    @property
    def n_groups(self) -> int:
        """How many kernels (numpy operations, or a few) one forward replay runs (0 before recording)."""
        return 0 if self._program is None else len(self._program.kernels)

    def __repr__(self) -> str:
        name = getattr(self.fn, "__name__", type(self.fn).__name__)
        p = self._program
        if p is None:
            return f"{type(self).__name__}({name}, not recorded yet)"
        return (f"{type(self).__name__}({name}: {p.n_nodes} nodes -> {len(p.kernels)} groups, "
                f"{p.n_live} captured Values)")

    def _take(self, batch) -> _Buffer:
        try:
            return self._free.setdefault(batch, []).pop()
        except IndexError:
            return _Buffer(self._program, batch)

    def _give_back(self, buffer: _Buffer) -> None:
        self._free.setdefault(buffer.batch, []).append(buffer)

    def _read_live(self, S: np.ndarray) -> None:
        p = self._program
        if p.n_live:                    # the live Values are the first slots of S
            floats_into(S, [v.data for v in p.live])     # a comprehension: see Optimizer._step_gathered

    def _check_model(self) -> None:
        if self._structure is not None and structure_of(self.fn) != self._structure:
            raise ReplayMismatchError(
                f"the model changed since it was recorded (a layer, an activation or a parameter object is "
                f"different): the replay would run the old one. Compile it again")

    def _add_into_values(self, out: int, grads: np.ndarray) -> None:
        p = self._program
        if out not in self._targets:
            bit = 1 << out
            reached = [s for s in range(p.n_live) if p.live_reach[s] & bit]
            front = set(p.frontier)
            leaves = [s for s in reached if s not in front]
            rows = slice(0, len(leaves)) if leaves == list(range(len(leaves))) else np.array(leaves, dtype=np.intp)
            self._targets[out] = ([p.live[s] for s in leaves], rows, [s for s in reached if s in front])
        values, rows, frontier = self._targets[out]
        with _GRAD_LOCK:
            for v, g in zip(values, grads[rows].tolist()):
                v.grad += g
            if frontier:
                _continue_below([p.live[s] for s in frontier], grads[frontier].tolist())


def structure_of(fn):
    """What identifies a model's structure: its parameter objects, every neuron's activation and its
    repr (None for a plain function). A replay of a model refuses to run once this changes."""
    if not hasattr(fn, "parameters") or not callable(fn.parameters):
        return None
    acts = tuple(getattr(n, "activation", None) for layer in getattr(fn, "layers", ())
                 for n in getattr(layer, "neurons", ()))
    return tuple(map(id, fn.parameters())), acts, repr(fn)


def _mismatch(what: str, replayed, eager) -> None:
    replayed, eager = np.asarray(replayed, dtype=float), np.asarray(eager, dtype=float)
    scale = float(np.max(np.abs(eager[np.isfinite(eager)]), initial=1.0))
    close = np.isclose(replayed, eager, rtol=1e-9, atol=1e-9 * scale, equal_nan=True)
    if close.all():
        return
    i = int(np.flatnonzero(~close.reshape(-1))[0])
    raise ReplayMismatchError(
        f"the replay disagrees with running fn eagerly: {what} {i} is {float(replayed.reshape(-1)[i])!r} "
        f"replayed but {float(eager.reshape(-1)[i])!r} eagerly. fn's graph depends on numbers it saw while recording (an if "
        f"on .data, max over .data, a no_grad() baseline) or the model changed since; keep such decisions "
        f"in the graph (relu instead of an if), or run fn without compile")


class Compiled(_Replay):
    """A function recorded on its first call and replayed with numpy afterwards; see :func:`compile`."""

    def __init__(self, fn, checks: int = 0):
        super().__init__(fn, checks)
        self._specs = None
        self._tree = None

    def _results(self, run: _Run):
        p, vals = self._program, (run.buffer.S, run.buffer.E)

        def leaf(k):
            example, s = p.outs[k]
            return ReplayValue(float(vals[example][s]), run, k)
        return A.rebuild(self._tree, leaf)

    def _record(self, args):
        specs = [A.spec_of(a, f"argument {i}") for i, a in enumerate(args)]

        def make_args():
            inputs: list[Value] = []
            return [A.make_values(s, a, inputs) for s, a in zip(specs, args)], inputs
        _, tree, _, graph = record(self.fn, make_args, None, A.flatten)
        with collector_paused():
            self._program, self._specs, self._tree = plan(graph), specs, tree
        self._structure = structure_of(self.fn)
        buffer = self._take(None)
        buffer.S[:], buffer.E[:] = self._program.first_S, self._program.first_E
        buffer.finite = False           # not checked: its backward checks every kernel
        return self._results(_Run(self, buffer))

    def _feed(self, args, E: np.ndarray) -> None:
        if len(args) != len(self._specs):
            raise ReplayMismatchError(f"recorded with {len(self._specs)} arguments, called with {len(args)}")
        offset = 0
        for i, (spec, x) in enumerate(zip(self._specs, args)):
            offset = A.feed(spec, x, E, offset, f"argument {i}")

    def __call__(self, *args):
        if self._program is None:
            with self._lock:
                if self._program is None:
                    return self._record(args)
        self._check_model()
        buffer = self._take(None)
        run = _Run(self, buffer)        # gives the buffer back if feeding fails
        self._feed(args, buffer.E)
        self._read_live(buffer.S)
        buffer.run_forward()
        results = self._results(run)
        if self.checks:
            self.checks -= 1
            self._check_eagerly(args, results)
        return results

    def _check_eagerly(self, args, results) -> None:
        from ..engine import enable_grad
        inputs: list[Value] = []
        values = [A.make_values(s, a, inputs) for s, a in zip(self._specs, args)]
        with enable_grad():             # fn may take gradients itself (chainrule.grad); the graph is dropped
            _, roots = A.flatten(self.fn(*values))
        replayed, stack = [], [results]
        while stack:                    # the results' tree, left to right, without recursion
            item = stack.pop()
            if isinstance(item, ReplayValue):
                replayed.append(item)
            else:
                stack.extend(reversed(item))
        if len(roots) != len(replayed):
            raise ReplayMismatchError(f"the replay gave {len(replayed)} outputs but fn run eagerly gives "
                                      f"{len(roots)}: fn's structure depends on the numbers; run it without compile")
        _mismatch("output", [r.data for r in replayed], [r.data for r in roots])

    def batch(self, *args, chunk: int = 4096) -> np.ndarray:
        """Evaluate a function recorded on ONE example on a batch: each argument gains a leading axis.

        Returns an array of shape ``(N,) + output shape`` (``(N,)`` for one Value). Records on the
        first example if nothing was recorded yet. Forward only: use :func:`vmap` to train on batches.

        >>> import random
        >>> from chainrule import MLP, compile
        >>> random.seed(0)
        >>> model = MLP(2, [3, 2])
        >>> out = compile(model).batch([[1.0, 2.0], [0.5, 0.0], [3.0, -1.0]])
        >>> out.shape, bool(abs(out[2, 1] - model([3.0, -1.0])[1].data) < 1e-12)
        ((3, 2), True)
        """
        arrays = [A.as_floats(a, f"argument {i}") for i, a in enumerate(args)]
        if not arrays or any(a.ndim == 0 for a in arrays):
            raise ValueError("batch() takes one array per argument, with one row per example")
        n = arrays[0].shape[0]
        if any(a.shape[0] != n for a in arrays):
            raise ValueError(f"batch() arguments must have the same number of rows, got {[a.shape[0] for a in arrays]}")
        if self._program is None:
            if n == 0:
                raise ValueError("batch() needs at least one example to record on")
            self(*[a[0] for a in arrays])
        self._check_model()
        if any(s[0] != "float" for s in self._specs):
            raise ReplayMismatchError("batch() takes float arrays with one row per example; this function was "
                                      "recorded with non-float arguments")
        if len(arrays) != len(self._specs):
            raise ReplayMismatchError(f"recorded with {len(self._specs)} arguments, batch() got {len(arrays)}")
        return _forward_rows(self, arrays, [s[1] for s in self._specs], self._tree, chunk)


def _forward_rows(owner: _Replay, arrays: list, shapes: list, tree: list, chunk: int) -> np.ndarray:
    """Every output for every row, in chunks, as an array (N,) + the outputs' shape."""
    p = owner._program
    n = arrays[0].shape[0]
    for i, (a, shape) in enumerate(zip(arrays, shapes)):
        if a.shape[1:] != tuple(shape):
            raise ReplayMismatchError(f"argument {i}: recorded rows of shape {tuple(shape)}, got rows of shape "
                                      f"{a.shape[1:]}")
    step = max(1, min(chunk, (1 << 23) // max(p.n_E, 1)))
    results = []
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        buffer = _Buffer(p, hi - lo) if hi - lo != step else owner._take(step)
        try:
            _feed_rows(buffer.E, [a[lo:hi] for a in arrays])
            owner._read_live(buffer.S)
            buffer.run_forward()
            columns = [buffer.E[s] if ex else np.full(hi - lo, buffer.S[s]) for ex, s in p.outs]
            results.append(np.stack(columns, 1) if columns else np.empty((hi - lo, 0)))
        finally:
            if hi - lo == step:
                owner._give_back(buffer)
    out = np.concatenate(results) if results else np.empty((0, len(p.outs)))
    shape = A.tree_shape(tree)
    return out.reshape((n,) + shape) if shape is not None else out


def _feed_rows(E: np.ndarray, arrays: list) -> None:
    offset = 0
    for a in arrays:
        b = a.shape[0]
        size = a.size // b if b else 0
        E[offset:offset + size] = a.reshape(b, size).T
        offset += size
