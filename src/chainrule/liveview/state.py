"""The training side of ``chainrule live``: one thread owns the model, everything else sends it commands.

The web server never touches a Value. It puts commands on the trainer's queue and reads the
frames the trainer publishes: plain numbers, already encoded as JSON. So the two sides cannot
corrupt each other's state, and nothing depends on the engine's grad mode being per thread (the
server builds no graph at all). The training loop is ``fit``'s, one step at a time::

    loss, scores = step(Xb, tb)      # forward (the compiled replay of the batch's loss)
    optimizer.zero_grad()            # zero grads
    loss.backward()                  # backward
    optimizer.step()                 # update

and between steps the trainer applies commands (play, pause, a new learning rate, a point added)
and, at most ``FPS`` times a second, publishes a frame: the curves, the decision boundary over a
grid (``Compiled.batch``), the weights with their gradients and last updates, and the selected
point's loss graph with data and grad in every node (:mod:`chainrule.liveview.graph`).

>>> import random; random.seed(0)
>>> from chainrule import MLP
>>> from chainrule.data import make_moons
>>> X, y = make_moons(40, noise=0.1, seed=0)
>>> trainer = Trainer(MLP(2, [4, 1], activation="tanh", output_activation="linear"), X, y, loss="mse", lr=0.1)
>>> trainer.start(); trainer.command({"action": "step"}); trainer.command({"action": "step"})
>>> frame = trainer.wait_frame(after=0, timeout=10, step=2)
>>> frame["step"], len(frame["curves"]["loss"]), frame["running"]
(2, 2, False)
>>> trainer.command({"action": "set", "lr": float("nan")})
Traceback (most recent call last):
chainrule.liveview.controls.LiveError: lr must be a finite number, got nan
>>> trainer.close()
"""

from __future__ import annotations

import json
import math
import queue
import threading
import time

import numpy as np

from ..nn import MLP
from ..optim import OPTIMIZERS
from ..replay import compile
from ..train import _TARGET_KIND, _batches, _compiled_objective, _objective, _resolve_loss, accuracy
from .controls import ACTIONS, LiveError, check_action, check_setting, whole
from .frames import FPS, boundary, curves, finite
from .graph import layout_source, point_graph, walk_steps
from .points import Points

__all__ = ["Trainer"]

class _Command:
    __slots__ = ("body", "done", "error")

    def __init__(self, body: dict):
        self.body, self.done, self.error = body, threading.Event(), None


class Trainer:
    """Trains ``model`` on ``(X, y)`` in its own thread, step by step, and publishes frames.

    ``y`` holds class numbers 0..C-1 (for one output, 0/1 or -1/+1). ``loss`` is a name of
    :data:`chainrule.losses.LOSSES`; ``optimizer`` a name of ``OPTIMIZERS`` with learning rate
    ``lr``; ``speed`` is training steps per second; ``max_steps`` pauses training after that many.
    The model is trained in place; after a change of the hidden layers, :attr:`model` is a new one.
    """

    def __init__(self, model: MLP, X, y, *, X_test=None, y_test=None, loss: str = "hinge",
                 optimizer: str = "sgd", lr: float = 0.1, l2: float = 0.0, batch_size: int = 0,
                 speed: int = 30, seed: int = 0, max_steps: int | None = None, running: bool = False):
        if not isinstance(model, MLP):
            raise TypeError(f"live needs a chainrule MLP, got {type(model).__name__}")
        if model.nin != 2:
            raise ValueError(f"live draws the decision boundary in the plane: the model must take 2 inputs, "
                             f"it takes {model.nin}")
        check_setting("hidden", model.nouts[:-1])       # every neuron is drawn: the page's bounds hold here too
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}")
        self.model = model
        self.loss_fn = _resolve_loss(loss, model.nouts[-1])
        self.loss_name = loss if isinstance(loss, str) else getattr(loss, "__name__", "loss")
        self.n_classes = max(2, model.nouts[-1])
        self.points = Points(X, y, X_test, y_test, n_classes=self.n_classes, one_output=model.nouts[-1] == 1)
        self.optimizer_name, self.l2, self.seed = optimizer, float(l2), int(seed)
        self.settings = {"lr": check_setting("lr", lr), "batch_size": check_setting("batch_size", batch_size),
                         "speed": check_setting("speed", speed)}
        self.max_steps = max_steps
        self.running = bool(running)
        self.selected = 0
        self.expanded = None            # (layer, neuron) drawn node by node in a per-neuron graph
        self.notice = ""
        self._commands: queue.Queue = queue.Queue()
        self._cond = threading.Condition()
        self._frame: dict | None = None
        self._frame_json = b""
        self._version = 0
        self._layouts: dict[int, bytes] = {}
        self._layout_key = None
        self._layout_id = 0
        self._walk = None
        self._renderers: list[threading.Thread] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chainrule-live-training", daemon=True)
        self._new_model(model)

    # --- the thread ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the training thread (it publishes a first frame at once)."""
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the training thread and wait for it (the model keeps what it learned)."""
        self._stop.set()
        self._commands.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)
        for renderer in self._renderers:      # Graphviz may be mid-drawing: let it finish, not die at exit
            renderer.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def command(self, body: dict, timeout: float = 10.0) -> None:
        """Have the training thread apply one command; raises :class:`LiveError` if it is refused.

        It returns once the trainer has published the frame that shows the command's effect."""
        if not self._thread.is_alive():
            raise LiveError("the training thread has stopped")
        cmd = _Command(body)
        self._commands.put(cmd)
        if not cmd.done.wait(timeout):
            raise LiveError("the trainer is busy; try again")
        if cmd.error is not None:
            raise LiveError(cmd.error)

    def wait_frame(self, after: int, timeout: float, step: int | None = None) -> dict | None:
        """The latest frame once its version is past ``after`` (and its step is at least ``step``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._frame is None or self._version <= after or (step is not None and self._frame["step"] < step):
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return None
                self._cond.wait(left)
            return self._frame

    def frame_json(self, after: int, timeout: float) -> bytes:
        """The latest frame as JSON, waiting up to ``timeout`` seconds for one newer than ``after``."""
        self.wait_frame(after, timeout)
        with self._cond:
            return self._frame_json

    def layout_json(self, layout_id: int) -> bytes | None:
        with self._cond:
            return self._layouts.get(layout_id)

    def _run(self) -> None:
        last_publish, next_step, dirty = 0.0, time.monotonic(), False
        self._publish()
        while not self._stop.is_set():
            now = time.monotonic()
            if self.running and now >= next_step:
                try:
                    self._train_step()
                except Exception as exc:  # noqa: BLE001 -- say it in the page, keep serving
                    self.running = False
                    self.notice = f"training stopped: {type(exc).__name__}: {str(exc)[:200]}"
                dirty = True
                next_step = max(next_step + 1.0 / self.settings["speed"], now - 0.05)
            now = time.monotonic()
            if dirty and now - last_publish >= 1.0 / FPS:
                self._publish()
                last_publish, dirty = now, False
            # Sleep until the next step is due or the next frame may go out, unless a command comes.
            wait = max(0.0, next_step - now) if self.running else 0.5
            if dirty:
                wait = min(wait, max(0.0, last_publish + 1.0 / FPS - now))
            try:
                cmd = self._commands.get(timeout=wait) if wait > 0 else self._commands.get_nowait()
            except queue.Empty:
                continue
            applied = []
            while cmd is not None:
                self._apply(cmd)
                applied.append(cmd)
                try:
                    cmd = self._commands.get_nowait()
                except queue.Empty:
                    cmd = None
            if not self._stop.is_set():
                self._publish()
                last_publish, dirty = time.monotonic(), False
            for cmd in applied:         # answered once the frame shows what the command did
                if isinstance(cmd, _Command):
                    cmd.done.set()
        with self._cond:
            self._cond.notify_all()

    def _apply(self, cmd) -> None:
        if isinstance(cmd, str):          # from this package's own threads: a layout is ready
            return
        try:
            self._do(cmd.body)
        except LiveError as exc:
            cmd.error = str(exc)
        except Exception as exc:  # noqa: BLE001 -- a bug must not kill the trainer; say what it was
            cmd.error = f"{type(exc).__name__}: {exc}"

    # --- commands --------------------------------------------------------------------------------

    def _do(self, body: dict) -> None:
        action = check_action(body)
        if action == "set":
            self._set({key: body[key] for key in ACTIONS["set"] if key in body})
        elif action in ("play", "pause"):
            self._walk = None
            self.running = action == "play"
            self.notice = ""
        elif action == "step":
            self._walk = None
            self.running = False
            self._train_step()
        elif action == "reset":
            self._reset(self.model.nouts[:-1], self.model.layers[0].activation)
        elif action == "select":
            self.selected = self.points.index(body.get("index"))
            self._walk = None
        elif action == "remove_point":
            self._remove(self.points.index(body.get("index")))
        elif action == "add_point":
            self._add(body.get("x"), body.get("y"), body.get("label"))
        elif action == "walk":
            self.running = False
            graph = self._graph(backward=False)
            self._walk = {"id": self._version + 1, "layout": self._layout_id, "node": self.selected,
                          "data": graph.data, "steps": walk_steps(graph)}
        elif action == "walk_finish":
            if self._walk is None:
                raise LiveError("no backward walk is running: press 'backward, step by step' first")
            self._walk = None
            self._train_step()
        elif action == "walk_cancel":
            self._walk = None
        elif action == "expand":
            self._expand(body.get("layer"), body.get("neuron"))

    def _expand(self, layer, neuron) -> None:
        if layer is None and neuron is None:
            self.expanded = None
            return
        layer = whole("layer", layer)
        if not 0 <= layer < len(self.model.layers):
            raise LiveError(f"layer must be 0 to {len(self.model.layers) - 1}, got {layer}")
        neuron = whole("neuron", neuron)
        width = self.model.nouts[layer]
        if not 0 <= neuron < width:
            raise LiveError(f"layer {layer} has neurons 0 to {width - 1}, got {neuron}")
        self.expanded = (layer, neuron)

    def _set(self, values: dict) -> None:
        if not values:
            raise LiveError("set needs one of: lr, batch_size, speed, hidden, activation")
        checked = {key: check_setting(key, value) for key, value in values.items()}   # all, before any change
        hidden = checked.pop("hidden", None)
        activation = checked.pop("activation", None)
        self.settings.update(checked)
        if "lr" in checked:
            self.optimizer.lr = checked["lr"]
        if "batch_size" in checked:
            self._new_batches()
        if hidden is not None or activation is not None:
            self._reset(self.model.nouts[:-1] if hidden is None else hidden,
                        self.model.layers[0].activation if activation is None else activation)

    def _add(self, x, y, label) -> None:
        at = self.points.add(x, y, label)
        if self.selected >= at:
            self.selected += 1
        self._new_data()

    def _remove(self, index: int) -> None:
        self.points.remove(index)
        if self.selected > index or self.selected >= len(self.points):
            self.selected = max(0, self.selected - 1)
        self._new_data()

    # --- model, data and the training step --------------------------------------------------------

    def _new_model(self, model: MLP) -> None:
        self.model = model
        self.params = model.parameters()
        self.optimizer = OPTIMIZERS[self.optimizer_name](self.params, lr=self.settings["lr"])
        self._forward = compile(model)                      # the grid, in one batched replay
        self.step, self.history = 0, {"step": [], "loss": [], "acc": [], "test_step": [], "test_loss": [],
                                      "test_acc": []}
        self.last_update = [0.0] * len(self.params)
        self._walk = None
        self.expanded = None
        self._new_data()

    def _reset(self, hidden: list[int], activation: str) -> None:
        self.seed += 1
        import random
        state = random.getstate()
        random.seed(self.seed)          # fresh weights drawn as nn.Neuron draws them, repeatably
        try:
            fresh = MLP(2, hidden + [self.model.nouts[-1]], activation=activation,
                        output_activation=self.model.layers[-1].activation)
        finally:
            random.setstate(state)
        if fresh.nouts == self.model.nouts and activation == self.model.layers[0].activation:
            for p, q in zip(self.params, fresh.parameters()):    # in place: the caller's model stays theirs
                p.data, p.grad = q.data, 0.0
            model = self.model
        else:
            model = fresh
        self.running = False
        self._new_model(model)

    def _new_data(self) -> None:
        self.t_train, self.t_test = self.points.targets(self.loss_fn)
        objective = _objective(self.model, self.loss_fn, self.l2)
        one_hot = self.n_classes if _TARGET_KIND.get(self.loss_fn) == "class" else None
        # One recording per batch size, dropped when the data changes (a new size records anew).
        self._train_objective = _compiled_objective(objective, one_hot)
        self._test_objective = _compiled_objective(objective, one_hot)
        self._new_batches()
        self._walk = None

    def _new_batches(self) -> None:
        train = ~self.points.is_test
        self._batches = _batches(self.points.X[train], self.t_train, self.settings["batch_size"], self.seed + self.step)

    def _train_step(self) -> None:
        Xb, tb = next(self._batches)
        loss, scores = self._train_objective(Xb, tb)         # forward
        self.optimizer.zero_grad()                           # zero grads
        loss.backward()                                      # backward
        before = [p.data for p in self.params]
        self.optimizer.step()                                # update
        self.last_update = [p.data - b for p, b in zip(self.params, before)]
        self.history["step"].append(self.step)                # log
        self.history["loss"].append(loss.data)
        self.history["acc"].append(accuracy(scores, tb))
        self.step += 1
        if not math.isfinite(loss.data):
            self.running = False
            self.notice = (f"training diverged at step {self.step} (the loss is {loss.data}): lower the "
                           "learning rate and press reset")
        if self.max_steps is not None and self.step >= self.max_steps and self.running:
            self.running = False
            self.notice = f"paused after {self.max_steps} steps (max_steps); press play to go on"

    def _target(self, index: int):
        train = ~self.points.is_test
        position = int(train[:index].sum()) if train[index] else int((~train)[:index].sum())
        targets = self.t_train if train[index] else self.t_test
        target = targets[position]
        if one_hot := (self.n_classes if _TARGET_KIND.get(self.loss_fn) == "class" else None):
            return np.eye(one_hot)[int(target)].tolist()
        return float(target)

    def _graph(self, backward: bool = True):
        return point_graph(self.model, self.loss_fn, self.points.X[self.selected].tolist(), self._target(self.selected),
                           backward=backward)

    # --- frames ----------------------------------------------------------------------------------

    def _publish(self) -> None:
        graph = self._graph()
        expanded = self.expanded if graph.grouped else None
        if (graph.key, expanded) != self._layout_key:
            self._layout_key = (graph.key, expanded)
            self._layout_id += 1
            source, boxes, node_box = layout_source(graph, expanded)
            renderer = threading.Thread(target=self._render_layout, args=(self._layout_id, source, boxes, node_box,
                                                                          graph.grouped),
                                        name="chainrule-live-layout", daemon=True)
            renderer.start()
            self._renderers = [t for t in self._renderers if t.is_alive()] + [renderer]
        test = self.points.is_test
        if self.t_test is not None and self.step and (not self.history["test_step"]
                                                      or self.history["test_step"][-1] != self.step - 1):
            loss, scores = self._test_objective(self.points.X[test].tolist(), self.t_test.tolist())
            self.history["test_step"].append(self.step - 1)
            self.history["test_loss"].append(loss.data)
            self.history["test_acc"].append(accuracy(scores, self.t_test))
        frame = {
            "step": self.step, "running": self.running, "settings": dict(self.settings),
            "hidden": self.model.nouts[:-1], "activation": self.model.layers[0].activation,
            "loss_name": self.loss_name, "optimizer": self.optimizer_name, "n_classes": self.n_classes,
            "arch": [self.model.nin] + self.model.nouts, "notice": self.notice,
            "curves": curves(self.history),
            "points": {"xy": np.round(self.points.X, 4).tolist(), "label": self.points.classes.tolist(),
                       "test": self.points.is_test.tolist(), "selected": self.selected},
            "grid": boundary(self._forward, self.points.extent),
            "params": {"data": finite([p.data for p in self.params]), "grad": finite([p.grad for p in self.params]),
                       "update": finite(self.last_update)},
            "acts": [finite(layer) for layer in graph.activations()],
            "graph": {"layout": self._layout_id, "grouped": graph.grouped, "expanded": expanded,
                      "data": finite(graph.data),
                      "grad": finite(graph.grad), "loss": finite([graph.data[-1]])[0]},
            "walk": self._walk,
        }
        with self._cond:
            self._version += 1
            frame["v"] = self._version
            self._frame = frame
            frame["graph"]["ready"] = self._layout_id in self._layouts
            self._frame_json = json.dumps(frame, allow_nan=False, separators=(",", ":")).encode()
            self._cond.notify_all()

    def _render_layout(self, layout_id: int, source: str, boxes, node_box, grouped: bool) -> None:
        # Graphviz runs here, off the training thread: a big drawing takes a second, training goes on.
        from ..render import RenderError, render
        try:
            payload = {"id": layout_id, "svg": render(source, "svg").decode("utf-8"), "boxes": boxes,
                       "node_box": node_box, "grouped": grouped}
        except RenderError as exc:
            payload = {"id": layout_id, "error": f"could not draw the graph: {exc}"}
        with self._cond:
            self._layouts = {k: v for k, v in self._layouts.items() if k >= layout_id - 2}
            self._layouts[layout_id] = json.dumps(payload).encode()
        self._commands.put("layout ready")      # the trainer publishes a frame that says so
