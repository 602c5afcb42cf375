"""The engine's recording hooks: ``track_created``, ``enable_grad``, ``rule_of``.

TEMPORARY shim: main's engine gains these three (the coordinator's contract); until this branch
merges it, they are provided here on top of the old engine. Delete this file after the merge and
import them from ``..engine``.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

from .. import engine
from ..engine import PRIMITIVES, Value

if hasattr(engine, "track_created"):                    # pragma: no cover - the real engine
    track_created, enable_grad, rule_of = engine.track_created, engine.enable_grad, engine.rule_of
else:
    _local = threading.local()
    _init, _result = Value.__init__, Value._result.__func__

    def _tracking_init(self, *args, **kwargs):
        _init(self, *args, **kwargs)
        for found in getattr(_local, "lists", ()):
            found.append(self)

    def _tracking_result(cls, *args, **kwargs):
        out = _result(cls, *args, **kwargs)
        for found in getattr(_local, "lists", ()):
            found.append(out)
        return out

    Value.__init__ = _tracking_init
    Value._result = classmethod(_tracking_result)

    @contextmanager
    def track_created():
        found: list = []
        lists = getattr(_local, "lists", ())
        _local.lists = lists + (found,)
        try:
            yield found
        finally:
            _local.lists = lists

    @contextmanager
    def enable_grad():
        previous = engine._GradMode.enabled
        engine._GradMode.enabled = True
        try:
            yield
        finally:
            engine._GradMode.enabled = previous

    def rule_of(v):
        if not v._prev:
            return None
        prim = PRIMITIVES.get(v._rule)
        if prim is None:
            raise NotImplementedError(f"no derivative rule for op {v._rule!r}; the ops with rules are "
                                      + ", ".join(PRIMITIVES))
        return prim
