"""The replay's two named errors."""

from __future__ import annotations

__all__ = ["NotReplayableError", "ReplayMismatchError"]


class ReplayMismatchError(ValueError):
    """A replay would not give what running ``fn`` eagerly gives: the arguments' structure differs
    from the recording, the model changed since, or an eager re-run (``checks=``) disagrees."""


class NotReplayableError(ValueError):
    """``fn`` did something while recording that a replay cannot repeat: a node whose derivative is
    a closure instead of a table row, or a constant made from another Value's number."""
