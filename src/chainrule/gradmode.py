"""Grad mode, per thread: whether arithmetic on Values records the graph.

Each thread has its own mode, as in PyTorch: a ``no_grad()`` block in a plotting or serving thread
must not stop another thread's forward pass from recording its graph (its backward would then
silently give zero gradients). ``track_created()`` is the replay's window on which Values a call
made. Ops read the thread's state only while some block is open somewhere (``open_blocks`` > 0),
so the common case costs one global read per op.

>>> import threading
>>> from chainrule import Value, no_grad
>>> seen = []
>>> with no_grad():
...     t = threading.Thread(target=lambda: seen.append(len((Value(2.0) * 3)._prev)))
...     t.start(); t.join()
>>> seen          # the other thread still records its graph
[2]
"""

from __future__ import annotations

import functools
import threading
from contextlib import contextmanager
from typing import Iterator

__all__ = ["enable_grad", "is_grad_enabled", "no_grad", "track_created"]

class _ThreadState(threading.local):
    """Each thread's mode; every thread starts recording, with no tracker open."""

    def __init__(self):
        # (the lists of the open track_created() blocks, whether ops record): one attribute, because
        # every op reads it while a block is open and each read of a thread-local costs a lookup.
        self.mode = ((), True)
        self.value_pass = False


_thread = _ThreadState()
open_blocks = 0                 # read by the engine on every op: keep it a plain module global
_blocks_lock = threading.Lock()
# One list per open track_created() block, of the ids of the Values that threads with no block of
# their own make meanwhile: a recording must not mistake a Value made during the call, in a worker
# thread, for one that existed before it. Ids, not the Values, so that nothing is kept alive: a
# Value that existed before the block and is still alive can share an id with none of them. A
# tuple, replaced whole, so that note() never sees it change.
_elsewhere: tuple = ()


class Made(list):
    """The Values a track_created() block saw its thread make; ``elsewhere``: the ``id``s of the
    Values other threads (with no block of their own) made while it was open."""

    __slots__ = ("elsewhere",)


def _count_block(delta: int) -> None:
    global open_blocks
    with _blocks_lock:
        open_blocks += delta


class _GradMode:
    """A block that sets this thread's grad mode; reusable, re-entrant, and a decorator too."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._saved = threading.local()

    def __enter__(self) -> None:
        _count_block(1)
        saved = self._saved.__dict__.setdefault("stack", [])
        lists, grad = _thread.mode
        saved.append(grad)
        _thread.mode = (lists, self.enabled)

    def __exit__(self, *exc) -> None:
        _thread.mode = (_thread.mode[0], self._saved.stack.pop())
        _count_block(-1)

    def __call__(self, fn):
        @functools.wraps(fn)
        def inside(*args, **kwargs):
            with self:
                return fn(*args, **kwargs)
        return inside


def no_grad(fn=None):
    """Compute data only, recording no graph, in this thread: for evaluation, plots and updates.

    Use it as ``with no_grad():`` or as a decorator, ``@no_grad`` or ``@no_grad()``.

    >>> from chainrule import Value, no_grad
    >>> x = Value(3.0)
    >>> with no_grad():
    ...     y = x * x
    >>> y.data, y._prev
    (9.0, ())
    """
    block = _GradMode(False)
    return block if fn is None else block(fn)


def enable_grad(fn=None):
    """Record the graph in this thread even inside an enclosing ``no_grad()`` block.

    >>> from chainrule import Value, no_grad, enable_grad
    >>> with no_grad():
    ...     with enable_grad():
    ...         y = Value(2.0) * 3
    >>> len(y._prev)
    2
    """
    block = _GradMode(True)
    return block if fn is None else block(fn)


def is_grad_enabled() -> bool:
    """True unless this thread is inside ``no_grad()``."""
    return _thread.mode[1]


@contextmanager
def track_created() -> Iterator[list]:
    """Collect every Value created in this thread inside the block (by ops and by ``Value(...)``).

    The compiled replay uses it to tell the Values a function made from those it captured. The
    list's ``elsewhere`` holds the ids of the Values that threads without a block of their own made
    meanwhile (a recording refuses to use one: it did not exist before the call, yet was not seen
    made).

    >>> from chainrule import Value
    >>> w = Value(2.0)
    >>> with track_created() as made:
    ...     y = w * 3
    >>> len(made), made[-1] is y, any(v is w for v in made)
    (2, True, False)
    """
    global _elsewhere
    created = Made()
    created.elsewhere = []
    with _blocks_lock:
        _elsewhere += (created.elsewhere,)
    _count_block(1)
    stack = _thread.mode[0]
    _thread.mode = (stack + (created,), _thread.mode[1])
    try:
        yield created
    finally:
        _thread.mode = (stack, _thread.mode[1])
        _count_block(-1)
        with _blocks_lock:
            _elsewhere = tuple(other for other in _elsewhere if other is not created.elsewhere)


@contextmanager
def value_pass() -> Iterator[None]:
    """While rules run on Values (``create_graph=True``): recording on, and ``float(Value)`` refused."""
    _count_block(1)
    previous = _thread.mode[1], _thread.value_pass
    _thread.mode, _thread.value_pass = (_thread.mode[0], True), True
    try:
        yield
    finally:
        _thread.mode, _thread.value_pass = (_thread.mode[0], previous[0]), previous[1]
        _count_block(-1)


def in_value_pass() -> bool:
    return _thread.value_pass


def note(v) -> bool:
    """The slow path of every op while a block is open: tell the trackers, return the grad mode."""
    lists, grad = _thread.mode
    if lists:
        for created in lists:
            created.append(v)
    else:
        for other in _elsewhere:        # made in a thread that records nothing: tell the recordings
            other.append(id(v))
    return grad
