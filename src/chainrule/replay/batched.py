"""``vmap``: record ONE example's function, replay it over a whole batch at once.

The recording holds one example's graph, so its size (and the time to record it) does not depend
on the batch. A replay feeds the batch as the trailing axis of the per-example buffer; shared
nodes, above all the weights, are read and computed once, and a layer is one matrix product over
the batch. With ``reduce="mean"`` (or ``"sum"``) the result is the mean (sum) over the examples of
``fn``'s output, and its gradients are those of eager backward on that batch loss: a term that
does not depend on the example (an L2 penalty) is computed once, and with ``"mean"`` it counts
once, as it would added to a mean loss.
"""

from __future__ import annotations

import numpy as np

from ..engine import Value
from . import args as A
from .errors import NotReplayableError, ReplayMismatchError
from .plan import plan
from ..engine import collector_paused
from .record import Ids, record
from .run import ReplayValue, _below, _Buffer, _forward_rows, _feed_rows, _mismatch, _Replay, _Run, structure_of

__all__ = ["ArrayStep", "Batched"]

_REDUCTIONS = (None, "mean", "sum")


class Batched(_Replay):
    """``fn`` of one example, replayed over batches; see :func:`vmap`."""

    def __init__(self, fn, reduce: str | None = None, checks: int = 0):
        super().__init__(fn, checks)
        if reduce not in _REDUCTIONS:
            raise ValueError(f"reduce must be None, 'mean' or 'sum', got {reduce!r}")
        self.reduce = reduce
        self._shapes = None
        self._tree = None
        self._has_aux = False
        self._live_order = None          # value_and_grad's params, laid out first if known in time

    # --- recording ---

    def _arrays(self, args) -> list[np.ndarray]:
        arrays = [A.as_floats(a, f"argument {i}") for i, a in enumerate(args)]
        if not arrays or any(a.ndim == 0 for a in arrays):
            raise ValueError("a vmap'd function takes one array per argument, with one row per example")
        n = arrays[0].shape[0]
        if any(a.shape[0] != n for a in arrays):
            raise ValueError(f"the arguments must have the same number of rows (examples), got "
                             f"{[a.shape[0] for a in arrays]}")
        if n == 0:
            raise ValueError("a batch needs at least one example")
        if self._shapes is not None:
            if len(arrays) != len(self._shapes):
                raise ReplayMismatchError(f"recorded with {len(self._shapes)} arguments, called with {len(arrays)}")
            for i, (a, shape) in enumerate(zip(arrays, self._shapes)):
                if a.shape[1:] != shape:
                    raise ReplayMismatchError(f"argument {i}: recorded rows of shape {shape}, got rows of shape "
                                              f"{a.shape[1:]}")
        return arrays

    def _flatten(self, out):
        if self.reduce is None:
            return A.flatten(out)
        has_aux = isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], Value)
        loss, aux = (out[0], out[1]) if has_aux else (out, None)
        if not isinstance(loss, Value):
            raise TypeError(f"with reduce={self.reduce!r}, fn must return one example's loss (a Value) or a pair "
                            f"(loss, aux), got {type(loss).__name__}")
        tree, roots = A.flatten(aux) if has_aux else ([], [])
        self._has_aux = has_aux
        return [t + 1 if isinstance(t, int) else t for t in tree], [loss] + roots

    def _record(self, arrays) -> None:
        specs = [("float", a.shape[1:]) for a in arrays]

        def make_args():
            inputs: list[Value] = []
            return [A.make_values(s, a[0], inputs) for s, a in zip(specs, arrays)], inputs
        _, tree, _, graph = record(self.fn, make_args, 0 if self.reduce is None else 1, self._flatten)
        with collector_paused():
            self._program, self._tree = plan(graph, self._live_order), tree
        self._shapes = [s[1] for s in specs]
        self._structure = structure_of(self.fn)

    def _ensure(self, args) -> tuple[list[np.ndarray], bool]:
        """The arguments as arrays, recording first if needed; True when this call recorded (an
        eager check of the recording itself would compare eager with eager)."""
        arrays = self._arrays(args)
        recorded = False
        if self._program is None:
            with self._lock:
                if self._program is None:
                    self._record(arrays)
                    recorded = True
        self._check_model()
        return arrays, recorded

    # --- replaying ---

    def _seed(self, batch: int) -> float:
        example, _ = self._program.outs[0]
        if self.reduce == "mean":
            return 1.0 / batch if example else 1.0
        return 1.0 if example else float(batch)

    def _loss(self, buffer: _Buffer) -> float:
        example, s = self._program.outs[0]
        if not example:
            return float(buffer.S[s]) * (buffer.batch if self.reduce == "sum" else 1)
        row = buffer.E[s]
        return float(row.mean() if self.reduce == "mean" else row.sum())

    def _aux(self, buffer: _Buffer):
        p = self._program
        cols = [buffer.E[s] if ex else np.full(buffer.batch, buffer.S[s]) for ex, s in p.outs[1:]]
        out = np.stack(cols, 1) if cols else np.empty((buffer.batch, 0))
        shape = A.tree_shape([t - 1 if isinstance(t, int) else t for t in self._tree])
        return out.reshape((buffer.batch,) + shape) if shape is not None else out

    def _forward(self, arrays, fill_live) -> _Buffer:
        buffer = self._take(arrays[0].shape[0])
        try:
            _feed_rows(buffer.E, arrays)
            fill_live(buffer.S)
            buffer.run_forward()
        except BaseException:
            self._give_back(buffer)
            raise
        return buffer

    def __call__(self, *args):
        """The reduced loss as a :class:`ReplayValue` (and aux per example), or, with ``reduce=None``,
        every output for every example as an array."""
        arrays, recorded = self._ensure(args)
        if self.reduce is None:
            return _forward_rows(self, arrays, self._shapes, self._tree, 4096)
        buffer = self._forward(arrays, self._read_live)
        run = _Run(self, buffer, self._seed(buffer.batch))
        loss = ReplayValue(self._loss(buffer), run, 0)
        aux = self._aux(buffer) if self._has_aux else None
        if self.checks and not recorded:
            self.checks -= 1
            self._check_eagerly(arrays, None)
        return (loss, aux) if self._has_aux else loss

    def value_and_grad(self, params) -> "ArrayStep":
        """A function ``step(data, *args) -> (loss, grad)`` over arrays: ``data`` holds the current
        numbers of ``params`` (a list of Values; the order of ``data`` and ``grad``), ``grad`` is the
        gradient of the reduced loss for each of them. No Python work per parameter per call."""
        if self.reduce is None:
            raise ValueError("value_and_grad needs a loss: make the function with reduce='mean' or 'sum'")
        step = ArrayStep(self, params)
        if self._program is None and self._live_order is None:
            self._live_order = step.params
        return step

    # --- the eager re-run guard ---

    def _check_eagerly(self, arrays, data_of) -> None:
        """Run ``fn`` eagerly on three examples of the batch (first, middle, last) and compare
        their losses, and the first one's gradient for every captured Value, with a replay of
        them. Every ``.data`` and ``.grad`` it touches is restored afterwards (while it runs, the
        captured Values hold the replay's current numbers)."""

        from ..engine import enable_grad

        p = self._program
        n = arrays[0].shape[0]
        rows = sorted({0, n // 2, n - 1})
        fill = self._read_live if data_of is None else data_of
        replayed = []
        for picked in ([a[rows] for a in arrays], [a[:1] for a in arrays]):
            buffer = self._forward(picked, fill)
            try:
                example, s = p.outs[0]
                replayed.append(buffer.E[s].copy() if example else np.full(len(picked[0]), buffer.S[s]))
                grads = buffer.run_backward(p, 0, 1.0)          # the last pass: example 0 alone
            finally:
                self._give_back(buffer)
        below = _below(p.live)
        saved = [(v, v.data, v.grad) for v in below]
        try:
            if data_of is not None:
                S = np.zeros(p.n_S)
                data_of(S)
                for v, x in zip(p.live, S[:p.n_live].tolist()):
                    v.data = x
            for v in below:
                v.grad = 0.0
            losses = []
            for k, r in enumerate(rows):
                inputs: list[Value] = []
                values = [A.make_values(("float", shape), a[r], inputs) for shape, a in zip(self._shapes, arrays)]
                with enable_grad():             # fn may take gradients itself (chainrule.grad)
                    out = self.fn(*values)
                if k == 0:
                    first = out[0] if self._has_aux else out
                losses.append((out[0] if self._has_aux else out).data)
            first.backward()
            _mismatch("the loss of checked example", replayed[0], losses)
            _mismatch("the gradient of captured Value number", grads, [v.grad for v in p.live])
        finally:
            for v, data, grad in saved:
                v.data, v.grad = data, grad


class ArrayStep:
    """``Batched.value_and_grad(params)``: the loss and its gradient as arrays, for array optimizers."""

    def __init__(self, batched: Batched, params):
        self.batched = batched
        self.params = list(params)
        for i, v in enumerate(self.params):
            if not isinstance(v, Value):
                raise TypeError(f"value_and_grad: params[{i}] must be a Value, got {type(v).__name__}")
        ids = np.fromiter(map(id, self.params), dtype=np.int64, count=len(self.params))
        if len(np.unique(ids)) != len(ids):
            first = len(ids) - len(set(ids.tolist()))
            raise ValueError(f"value_and_grad: params lists the same Value more than once ({first} repeat"
                             f"{'s' * (first != 1)}); each parameter's gradient would be ambiguous. Pass each once")
        self._map = None
        self._unseen = None         # gradients of the captured Values outside params, summed over calls

    def _mapping(self):
        p = self.batched._program
        at = Ids(self.params).find(p.live)          # each live Value's place in params, -1 if none
        other = np.flatnonzero(at < 0).tolist()
        for s in other:
            v = p.live[s]
            if v._prev:
                raise NotReplayableError(
                    f"value_and_grad: fn captured {v!r}, made by op {v._op!r} from other Values, and it is "
                    f"not in params: its gradient would have to continue below it. Pass it in params, or "
                    f"make it inside fn")
        src = np.flatnonzero(at >= 0)
        dst = at[src]
        # The params laid out first and in order (value_and_grad before the first call): slices.
        n = len(src)
        if n and np.array_equal(src, np.arange(n)) and np.array_equal(dst, np.arange(n)):
            src = dst = slice(0, n)
        self._map = (src, dst, other)

    def _filler(self, data: np.ndarray):
        src, dst, other = self._map
        live = self.batched._program.live

        def fill(S):
            S[src] = data[dst]
            for s in other:
                S[s] = live[s].data
        return fill

    def _run(self, data, args, backward: bool):
        b = self.batched
        arrays, recorded = b._ensure(args)
        if self._map is None:
            self._mapping()
        data = np.asarray(data, dtype=float)
        if data.shape != (len(self.params),):
            raise ValueError(f"data must hold one number per parameter ({len(self.params)}), got shape {data.shape}")
        fill = self._filler(data)
        buffer = b._forward(arrays, fill)
        try:
            loss = b._loss(buffer)
            aux = b._aux(buffer) if b._has_aux else None
            grad = None
            if backward:
                with buffer.lock:          # the buffer is this call's until it is given back below
                    live_grad = buffer.run_backward(b._program, 0, b._seed(buffer.batch), copy=False)
                src, dst, other = self._map
                if other:
                    self._unseen = live_grad[other] + (0.0 if self._unseen is None else self._unseen)
                if isinstance(dst, slice) and dst.stop == len(self.params):
                    grad = live_grad[src].copy()          # every parameter, in order: one copy
                else:
                    grad = np.zeros(len(self.params))
                    grad[dst] = live_grad[src]
        finally:
            b._give_back(buffer)
        if backward and b.checks and not recorded:
            b.checks -= 1
            b._check_eagerly(arrays, fill)
        return ((loss, aux) if b._has_aux else loss), grad

    def add_unseen_grads(self) -> None:
        """Add into the ``.grad`` of the captured Values that are not in params what the calls since
        the last time gave them, as eager backward would have at each call (``fit`` does this when it
        writes its arrays back, so a model's parameters outside the optimizer end as eagerly)."""
        if self._unseen is None:
            return
        live = self.batched._program.live
        for s, g in zip(self._map[2], self._unseen.tolist()):
            live[s].grad += g
        self._unseen = None

    def __call__(self, data, *args):
        """``(loss, grad)``; ``loss`` is ``(loss, aux)`` when fn returns a pair."""
        return self._run(data, args, True)

    def value(self, data, *args):
        """The loss (and aux) only: a forward replay, for evaluation."""
        return self._run(data, args, False)[0]
