"""How ``fit`` takes one training step: eagerly, or replayed (``compiled=True``).

Every kind of step has the same four methods, so ``fit``'s loop reads the same for all of them:
``step(Xb, tb, guard) -> (loss, scores)`` trains on one batch (calling ``guard(loss)`` between
the forward pass and the update, where ``fit`` stops on a loss that is not finite), ``evaluate(X, t) -> (loss, scores)``
scores a set without training, ``sync()`` brings the model's Values up to date and ``resume()``
picks up whatever a callback changed.

- :class:`EagerSteps`: the lecture's loop, a fresh graph of Values every step.
- :class:`ReplayedSteps` (``compiled=True`` with a built-in loss): ONE example's objective is
  recorded once (:func:`chainrule.vmap`) and replayed over every batch, forward and backward.
  With an optimizer that steps on arrays (SGD, Adam, AdamW), the parameters and the optimizer's
  state live in arrays for the whole run and no step does Python work per parameter. The rule for
  the Values: they are brought up to date when ``fit`` returns and before every callback (which
  may read and change them: the arrays are read back after it), never in between. So another
  thread that reads the model during a compiled ``fit`` sees the weights as they were at the
  start (or at the last callback).
- :class:`WholeBatchSteps` (``compiled=True`` with your own loss function, which may not be a sum
  of per-example terms): the batch's whole objective recorded once per batch size
  (:func:`chainrule.compile`), parameters in Values.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .engine import no_grad
from .losses import l2_penalty, sse_loss
from .nn import MLP

__all__ = ["EagerSteps", "ReplayedSteps", "WholeBatchSteps", "objective", "whole_batch_replay"]


def _no_guard(loss: float) -> None:
    pass


def objective(model: MLP, loss_fn: Callable, l2: float):
    """Forward one batch: returns (loss, scores); ``loss`` is the data loss plus the L2 penalty."""
    params = model.parameters()

    def batch_objective(X_rows: list, targets: list):
        scores = [model(x) for x in X_rows]
        loss = loss_fn(scores, targets)
        if l2:
            loss = loss + l2_penalty(params, l2)
        return loss, scores

    return batch_objective


class EagerSteps:
    """A new graph of Values every step: forward, zero grads, backward, update."""

    def __init__(self, model: MLP, loss_fn: Callable, l2: float, optimizer):
        self.objective = objective(model, loss_fn, l2)
        self.optimizer = optimizer

    def step(self, Xb: np.ndarray, tb: np.ndarray, guard=_no_guard):
        loss, scores = self.objective(Xb.tolist(), tb.tolist())   # forward
        guard(loss.data)
        self.optimizer.zero_grad()                                 # zero grads
        loss.backward()                                            # backward
        self.optimizer.step()                                      # update
        return loss.data, scores

    def evaluate(self, X: np.ndarray, t: np.ndarray):
        with no_grad():
            loss, scores = self.objective(X.tolist(), t.tolist())
        return loss.data, scores

    def sync(self) -> None:
        pass

    def resume(self) -> None:
        pass


def whole_batch_replay(batch_objective: Callable, n_classes: int | None, checks: int = 0) -> Callable:
    """``batch_objective(X_rows, targets)`` recorded once per batch size and replayed
    (:func:`chainrule.compile`): returns ``step(X_rows, targets) -> (loss, scores)``.

    Class numbers would be baked into a recording (a class number picks a logit), so with
    ``n_classes`` set the labels go to the loss as one-hot float rows instead (the built-in
    cross-entropy takes either, with the same result).
    """
    from .replay import compile

    recordings: dict[int, object] = {}
    eye = None if n_classes is None else np.eye(n_classes)

    def step(X_rows, targets):
        compiled = recordings.get(len(X_rows))
        if compiled is None:
            compiled = recordings[len(X_rows)] = compile(batch_objective, checks=checks)
        if eye is not None:
            targets = eye[np.asarray(targets, dtype=np.intp)]
        return compiled(X_rows, targets)

    return step


def _refuse_changed_model(model: MLP, structure) -> None:
    from .replay import ReplayMismatchError, structure_of

    if structure_of(model) != structure:
        raise ReplayMismatchError(
            "a callback changed the model's structure (a layer, an activation or a parameter object) "
            "during a compiled fit; the replay would keep training the old one. Change the model "
            "before fit, or train with compiled=False")


class WholeBatchSteps(EagerSteps):
    """The batch's objective recorded once per batch size and replayed; parameters in Values."""

    def __init__(self, model: MLP, loss_fn: Callable, l2: float, optimizer, n_classes: int | None,
                 checks: int = 2):
        from .replay import structure_of

        super().__init__(model, loss_fn, l2, optimizer)
        self.model, self.structure = model, structure_of(model)
        self.replay = whole_batch_replay(self.objective, n_classes, checks)

    def resume(self) -> None:
        _refuse_changed_model(self.model, self.structure)

    def step(self, Xb, tb, guard=_no_guard):
        loss, scores = self.replay(Xb, tb)                          # forward (replayed)
        guard(loss.data)
        self.optimizer.zero_grad()                                  # zero grads
        loss.backward()                                             # backward (replayed)
        self.optimizer.step()                                       # update
        return loss.data, scores


class ReplayedSteps:
    """One example's objective recorded once, replayed over each batch (see the module docstring).

    The objective of one example is its loss term plus its share of the L2 penalty: a built-in
    loss is a mean over examples (``sse`` a sum), so ``reduce`` is "mean" (share 1: the penalty
    counts once in the mean) or "sum" (share 1/n of the penalty per example).
    """

    def __init__(self, model: MLP, loss_fn: Callable, l2: float, optimizer, n_classes: int | None,
                 checks: int = 2):
        from .replay import structure_of, vmap

        params = model.parameters()

        def example_objective(x, t, share):
            score = model(x)
            loss = loss_fn([score], [t])
            if l2:
                loss = loss + l2_penalty(params, l2) * share
            return loss, score

        self.model, self.optimizer = model, optimizer
        self.reduce = "sum" if loss_fn is sse_loss else "mean"
        self.batched = vmap(example_objective, reduce=self.reduce, checks=checks)
        self.eye = None if n_classes is None else np.eye(n_classes)
        self.arrays = hasattr(optimizer, "array_state") and hasattr(optimizer, "step_arrays")
        self._structure_of = structure_of
        self.structure = structure_of(model)
        if self.arrays:
            self.value_and_grad = self.batched.value_and_grad(optimizer.params)
            self.state = optimizer.array_state()
            self.grad = None

    def _inputs(self, X: np.ndarray, t: np.ndarray) -> tuple:
        targets = self.eye[t.astype(np.intp)] if self.eye is not None else t.astype(float)
        share = np.full(len(X), 1.0 if self.reduce == "mean" else 1.0 / len(X))
        return X, targets, share

    def step(self, Xb, tb, guard=_no_guard):
        inputs = self._inputs(Xb, tb)
        if not self.arrays:
            loss, scores = self.batched(*inputs)                    # forward (replayed over the batch)
            guard(loss.data)
            self.optimizer.zero_grad()                              # zero grads
            loss.backward()                                         # backward (replayed)
            self.optimizer.step()                                   # update
            return loss.data, scores
        (loss, scores), grad = self.value_and_grad(self.state.p, *inputs)   # forward and backward
        guard(loss)
        self.optimizer.step_arrays(self.state, grad)                        # update, on arrays
        self.grad = grad
        return loss, scores

    def evaluate(self, X, t):
        if not self.arrays:
            with no_grad():
                loss, scores = self.batched(*self._inputs(X, t))
            return loss.data, scores
        return self.value_and_grad.value(self.state.p, *self._inputs(X, t))

    def sync(self) -> None:
        """Write the arrays back: parameters' ``.data`` and ``.grad`` (the last step's gradient, as
        eager ``fit`` leaves it) and the optimizer's own state."""
        if not self.arrays:
            return
        self.state.write_back()
        if self.grad is not None:
            for p, g in zip(self.optimizer.params, self.grad.tolist()):
                p.grad = g
        self.value_and_grad.add_unseen_grads()      # Values outside the optimizer accumulate, as eagerly

    def resume(self) -> None:
        """After a callback: refuse a model whose structure changed, read the Values back."""
        _refuse_changed_model(self.model, self.structure)
        if self.arrays:
            self.state = self.optimizer.array_state()
