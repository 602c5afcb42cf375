"""Watch a network learn, live: the boundary, the curves, the weights and one point's graph, in a browser.

The package is ``chainrule.liveview``; its function :func:`live` is exported as ``chainrule.live``
(a package named like the function would shadow it, see docs/ARCHITECTURE.md).
``chainrule live`` (the command) and :func:`live` (in a notebook) start the same two threads: a
trainer that owns the model (:mod:`chainrule.liveview.state`) and a local web server for the page
(:mod:`chainrule.liveview.server`, page and scripts in ``assets/``). In a notebook the page shows in
the cell as an iframe, and the notebook stays free while the network trains.

>>> import random; random.seed(0)
>>> from chainrule import MLP
>>> from chainrule.data import make_moons
>>> X, y = make_moons(60, noise=0.1, seed=0)
>>> session = live(MLP(2, [4, 1], activation="tanh", output_activation="linear"), X, y,
...                loss="mse", lr=0.1, steps=20, display=False)
>>> session.wait(timeout=60).step, session.url.startswith("http://127.0.0.1:")
(20, True)
>>> session.stop()
"""

from __future__ import annotations

import html
import time

from .server import LiveServer
from .controls import LIMITS, LiveError
from .state import Trainer

__all__ = ["LIMITS", "LiveError", "LiveServer", "LiveSession", "Trainer", "live"]


class LiveSession:
    """A running live view: ``.url`` opens it, ``.model`` is the model being trained, ``.stop()`` ends it.

    In Jupyter it shows itself as the page in an iframe (the same page ``chainrule live`` serves).
    The address is 127.0.0.1 on this machine, so the page shows where the browser runs on the same
    machine as the kernel (a local Jupyter, VS Code), not from a remote JupyterHub.
    """

    def __init__(self, server: LiveServer, height: int = 820):
        self.server = server
        self.height = height

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def model(self):
        """The model being trained (a new one after the page changed the hidden layers)."""
        return self.server.trainer.model

    @property
    def step(self) -> int:
        return self.server.trainer.step

    @property
    def history(self) -> dict:
        """Per step: ``step``, ``loss`` and ``acc`` of the batch; the test set's at published frames."""
        return self.server.trainer.history

    def wait(self, timeout: float = 60.0) -> "LiveSession":
        """Block until training pauses (``steps`` reached, or paused from the page), or ``timeout``."""
        frame = self.server.trainer.wait_frame(-1, timeout=1.0)
        deadline = time.monotonic() + timeout
        while frame is not None and frame["running"] and time.monotonic() < deadline:
            frame = self.server.trainer.wait_frame(frame["v"], timeout=max(0.0, deadline - time.monotonic()))
        return self

    def command(self, action: str, **values) -> None:
        """Send the trainer what a page button sends: ``command("play")``, ``command("set", lr=0.05)``."""
        self.server.trainer.command({"action": action, **values})

    def stop(self) -> None:
        """Stop training and serving; the model keeps what it learned."""
        self.server.close()

    def __repr__(self) -> str:
        state = "stopped" if not self.server.trainer.alive else f"step {self.step}"
        return f"<chainrule live at {self.url} ({state})>"

    def _repr_html_(self) -> str:
        if not self.server.trainer.alive:
            return f"<p>{html.escape(repr(self))}</p>"
        url = html.escape(self.url, quote=True)
        return (f'<iframe src="{url}" width="100%" height="{int(self.height)}" style="border: 1px solid #ddd; '
                f'min-width: 1240px" title="chainrule live"></iframe>'
                f'<p style="font-size: 12px">chainrule live: <a href="{url}" target="_blank">open in its own tab</a>; '
                "<code>session.stop()</code> ends it.</p>")


def live(model, X, y, *, X_test=None, y_test=None, loss: str = "hinge", optimizer: str = "sgd",
         lr: float = 0.1, l2: float = 0.0, batch_size: int = 0, speed: int = 30, steps: int | None = None,
         port: int = 0, play: bool = True, display: bool = True, height: int = 820) -> LiveSession:
    """Train ``model`` on ``(X, y)`` in the background and show it learning, live, in the notebook.

    ``X`` is n points x 2 coordinates, ``y`` their classes (0/1 or -1/+1 for one output; 0..C-1
    for C outputs with ``loss="cross_entropy"``); ``X_test``/``y_test`` are shown and evaluated,
    never trained on. ``optimizer`` is ``sgd``, ``adam`` or ``adamw`` with rate ``lr``; ``speed``
    is training steps per second; ``steps`` pauses after that many (None: until paused);
    ``play=False`` starts paused. ``display`` shows the page in the cell (it needs IPython, which
    every notebook has). Returns the :class:`LiveSession`; ``session.stop()`` ends it.
    """
    trainer = Trainer(model, X, y, X_test=X_test, y_test=y_test, loss=loss, optimizer=optimizer, lr=lr,
                      l2=l2, batch_size=batch_size, speed=speed, max_steps=steps, running=play)
    session = LiveSession(LiveServer(trainer, port=port).start(), height=height)
    if display:
        try:
            from IPython.display import display as show
        except ImportError:
            print(f"chainrule live: open {session.url}")
        else:
            show(session)
    return session
