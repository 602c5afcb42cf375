"""Compiled replay: record the graph a function builds once, then replay it with numpy.

Scalar autograd is the clearest way to learn backprop and the slowest way to run it. The replay
keeps the scalar code and makes it fast: the first call runs ``fn`` eagerly on Values and records
the graph it builds; later calls replay that recording with a few numpy operations per layer
instead of one Python object per operation.

- :func:`compile` replays a whole call: ``compile(loss_fn)(X, y)``.
- :func:`vmap` replays a function of ONE example over a batch: ``vmap(example_loss,
  reduce="mean")(X, y)`` is the batch's mean loss, recorded on one example, so recording costs the
  same for 8 examples or 8,000 and each layer is one matrix product over the batch.

>>> import random
>>> from chainrule import MLP, compile, vmap
>>> random.seed(0)
>>> model = MLP(2, [4, 1], activation="relu", output_activation="linear")
>>> score = compile(model)
>>> eager = model([0.5, -1.0])
>>> replayed = score([0.5, -1.0])                  # first call: records
>>> replayed = score([0.5, -1.0])                  # later calls: replay
>>> abs(replayed.data - eager.data) < 1e-12
True
>>> batch_loss = vmap(lambda x, y: (model(x) - y) ** 2, reduce="mean")
>>> loss = batch_loss([[0.5, -1.0], [1.0, 2.0]], [1.0, -1.0])
>>> loss.backward()                                # gradients of the mean over both examples

How the recording is read (:mod:`~chainrule.replay.record`)
-----------------------------------------------------------
Every leaf of the recording is one of three things:

- an **input**: a number the call's arguments supplied. Floats (numbers, lists, nested lists, float
  numpy arrays) become fresh Values for ``fn``; later calls feed new numbers into the same slots.
- a **live Value**: one that existed before the call (a model's weights, or ``w3 = w * 3`` made
  earlier). Its current ``.data`` is read at every replay and ``backward()`` adds into its ``.grad``;
  for a node made by an op, the gradient continues into the graph below it as eager backward's does.
- a **constant**: a Value created during the call (``1 - y * s`` makes a ``Value(1)``), baked in.

What ``fn`` decides from numbers while recording cannot be replayed. The recording refuses what
it can see (:class:`NotReplayableError`): a constant made from another Value's number
(``Value(x.data)``, ``max`` over ``.data``), an op whose derivative is a closure rather than a
table row (register it with ``chainrule.primitive``), and a Value that another thread made during
the call (a thread pool inside ``fn``: the recording sees the calling thread's ops only). What it
cannot see (an ``if x.data > 0``, a
``no_grad()`` baseline) the guard ``checks=N`` catches: the first N replays also run ``fn``
eagerly and raise :class:`ReplayMismatchError` naming the difference (``fit`` does this for its
first steps). Integers, bools and ``None`` arguments are structure: passed to ``fn`` unchanged, and
a later call must pass equal ones; float shapes are structure too. A call that differs raises
:class:`ReplayMismatchError`; so does a call on a model whose layers, activations or parameter
objects changed since recording. Values, strings and other objects are refused as arguments.

How the replay runs (:mod:`~chainrule.replay.plan`, :mod:`~chainrule.replay.kernels`)
-------------------------------------------------------------------------------------
Nodes are grouped by depth, op and the outputs that depend on them, and each group runs as one
numpy operation, applying the rule from the engine's table of primitives (``PRIMITIVES``) to
arrays through the ``ARRAY`` math namespace. A chain of additions (``b + w0*x0 + w1*x1 + ...``)
becomes one reduction, with its products as dot products; a group of dot products whose operands
form a grid (every neuron of a layer times the same inputs) becomes one matrix product. Results
equal eager ones up to the order of summation (differences of order 1e-16 times the numbers
summed). Backward from one output runs only the groups on its paths, so several outputs never
mix. Where a number is not finite the element is recomputed with the scalar rule: it raises the
eager error (``exp`` overflowing, ``log`` of a non-positive number) or gives the eager number.
Backward skips the parts of the graph that lead to no captured Value (an error there is not
raised), and ops whose result ``fn`` discards are not replayed.

Each call's results keep their own buffers, so earlier results stay valid and threads do not
share them; gradients are added into Values under one lock.
"""

from __future__ import annotations

from typing import Callable

from .batched import ArrayStep, Batched
from .errors import NotReplayableError, ReplayMismatchError
from .run import Compiled, ReplayValue, structure_of

__all__ = ["ArrayStep", "Batched", "Compiled", "NotReplayableError", "ReplayMismatchError", "ReplayValue",
           "compile", "structure_of", "vmap"]


def compile(fn: Callable, checks: int = 0) -> Compiled:
    """Record ``fn``'s graph on its first call, replay it vectorised with numpy on later calls.

    ``fn`` takes numbers, lists or numpy arrays and returns a Value (or a nested list of Values).
    The result of each call mirrors that: :class:`ReplayValue` objects whose ``.data`` is the number
    and whose ``backward()`` adds into the ``.grad`` of the Values ``fn`` captured (the model's
    parameters), so a normal training loop runs unchanged. ``checks=N`` also runs ``fn`` eagerly
    on the first N replays and raises :class:`ReplayMismatchError` if the outputs differ. See the
    module docstring for what is recorded, what is baked in, and what is refused.

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
    chainrule.replay.errors.ReplayMismatchError: argument 0: recorded floats of shape (2,), got shape (3,)
    """
    return Compiled(fn, checks)


def vmap(fn: Callable, reduce: str | None = "mean", checks: int = 0) -> Batched:
    """Record ``fn`` on ONE example and replay it over a whole batch at once, forward and backward.

    Each argument of the returned function is an array with one row per example (``X`` of shape
    (N, features), ``y`` of shape (N,) or (N, classes)); ``fn`` receives one example's row of each.

    - ``reduce="mean"`` (or ``"sum"``): ``fn`` returns one example's loss, or a pair ``(loss, aux)``.
      The call returns the mean (sum) over the batch as a :class:`ReplayValue` whose ``backward()``
      gives the captured Values exactly the gradients eager backward gives on that batch loss (and
      ``aux``, any Values, as an array with one row per example). A term of ``fn`` that does not
      depend on the example, like an L2 penalty, is computed once and, with ``"mean"``, counts once.
      ``value_and_grad(params)`` returns ``step(data, *args) -> (loss, grad)`` on arrays instead.
    - ``reduce=None``: forward only; every output for every example, as an array (N,) + shape.

    Like ``jax.vmap`` and ``torch.func.vmap``, ``fn`` is written for one example. Recording costs
    the same whatever the batch size, and each layer replays as one matrix product over the batch.

    >>> import random
    >>> import numpy as np
    >>> from chainrule import MLP, vmap
    >>> from chainrule.losses import l2_penalty
    >>> random.seed(0)
    >>> model = MLP(2, [8, 1], activation="relu", output_activation="linear")
    >>> def example_loss(x, y):
    ...     return (model(x) - y) ** 2 + l2_penalty(model.parameters(), 1e-3)
    >>> batch_loss = vmap(example_loss, reduce="mean")
    >>> X, y = np.random.default_rng(0).normal(size=(64, 2)), np.ones(64)
    >>> loss = batch_loss(X, y)
    >>> model.zero_grad(); loss.backward()
    >>> eager = sum((model(list(x)) - t) ** 2 for x, t in zip(X, y)) * (1 / 64) \\
    ...     + l2_penalty(model.parameters(), 1e-3)
    >>> grads = [p.grad for p in model.parameters()]
    >>> model.zero_grad(); eager.backward()
    >>> bool(abs(loss.data - eager.data) < 1e-12), bool(np.allclose(grads, [p.grad for p in model.parameters()]))
    (True, True)
    >>> vmap(model, reduce=None)(X).shape              # forward only: every example's output
    (64,)
    """
    return Batched(fn, reduce, checks)
