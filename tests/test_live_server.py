"""chainrule live without a browser: the trainer, the point's graph, and the server's guards."""

import http.client
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from chainrule import MLP, SGD, fit
from chainrule.data import make_moons
from chainrule.engine import topological_order
from chainrule.liveview import LiveError, LiveServer, Trainer
from chainrule.liveview.graph import point_graph, walk_steps
from chainrule.losses import hinge_loss, mse_loss

SRC = Path(__file__).resolve().parent.parent / "src"


def moons(n=40):
    return make_moons(n, noise=0.1, seed=0)


def make_trainer(hidden=(4,), running=False, **kwargs):
    X, y = moons()
    model = MLP(2, list(hidden) + [1], activation="tanh", output_activation="linear")
    kwargs.setdefault("loss", "mse")
    kwargs.setdefault("lr", 0.1)
    return Trainer(model, X, y, running=running, **kwargs)


@pytest.fixture
def server():
    live = LiveServer(make_trainer()).start()
    yield live
    live.close()


def request(live, method, path, body=None, token=True, headers=None):
    """One request to the server; returns (status, parsed JSON or text)."""
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=20)
    sent = {"Host": f"127.0.0.1:{live.port}", **(headers or {})}
    if token:
        sent["X-Chainrule-Token"] = live.token if token is True else token
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=sent)
    response = conn.getresponse()
    raw = response.read()
    conn.close()
    kind = response.getheader("Content-Type", "")
    return response.status, (json.loads(raw) if kind.startswith("application/json") else raw.decode())


def frame(live, after=-1):
    status, body = request(live, "GET", f"/api/frame?after={after}")
    assert status == 200
    return body


# --- the trainer ------------------------------------------------------------------------------------

def test_trainer_trains_exactly_as_fit_does():
    """Ten steps of the trainer (compiled replay) leave the same weights as fit's ten eager steps."""
    X, y = moons()
    a = MLP(2, [4, 1], activation="tanh", output_activation="linear")
    b = MLP(2, [4, 1], activation="tanh", output_activation="linear")
    for p, q in zip(a.parameters(), b.parameters()):
        q.data = p.data
    trainer = Trainer(a, X, y, loss="mse", lr=0.1)
    trainer.start()
    try:
        for _ in range(10):
            trainer.command({"action": "step"})
    finally:
        trainer.close()
    history = fit(b, X, y, loss="mse", optimizer=SGD(b.parameters(), lr=0.1), steps=10, progress=False)
    assert trainer.step == 10
    np.testing.assert_allclose([p.data for p in a.parameters()], [p.data for p in b.parameters()], rtol=0, atol=1e-12)
    np.testing.assert_allclose(trainer.history["loss"], history.loss, rtol=0, atol=1e-12)


def test_point_graph_has_the_engines_numbers_and_leaves_the_model_as_it_was():
    """The point's graph gives the eager loss and gradients; the model's grads and labels are put back."""
    model = MLP(2, [3, 1], activation="tanh", output_activation="linear")
    params = model.parameters()
    for i, p in enumerate(params):
        p.grad = float(i)
    graph = point_graph(model, mse_loss, [0.3, -0.7], 1.0)
    assert [p.grad for p in params] == [float(i) for i in range(len(params))]
    assert [p.label for p in params][:3] == ["L0.N0.w0", "L0.N0.w1", "L0.N0.b"]
    expected = mse_loss([model([0.3, -0.7])], [1.0])
    model.zero_grad()
    expected.backward()
    assert graph.data[-1] == expected.data and graph.labels[-1] == "loss"
    for p in params:
        assert graph.grad[graph.index[p]] == p.grad
    assert "L1.N0.w2" in graph.labels and "L0.N1.w0*x0" in graph.labels


def test_walk_steps_visit_nodes_in_reverse_topological_order_with_explains_lines():
    """Backward step by step visits every node from the loss back, each with its chain-rule caption."""
    model = MLP(2, [2, 1], activation="tanh", output_activation="linear")
    graph = point_graph(model, hinge_loss, [0.5, -1.0], -1.0, backward=False)
    steps = walk_steps(graph)
    assert [s["node"] for s in steps] == list(range(len(graph.order) - 1, -1, -1))
    assert steps[0]["caption"].startswith("loss.grad") and "start" in steps[0]["caption"]
    assert any("L0.N0.sum.grad += (1 - L0.N0.out.data**2) * L0.N0.out.grad" in s["caption"] for s in steps)
    grads = {}
    for s in steps:
        grads.update(dict((k, g) for k, g in s["changes"]))
    done = point_graph(model, hinge_loss, [0.5, -1.0], -1.0)
    for place, g in grads.items():
        assert math.isclose(g, done.grad[place], abs_tol=1e-12)
    assert len(topological_order(graph.root)) == len(graph.order)


def test_large_nets_are_drawn_one_box_per_neuron():
    """MLP(2, [8, 8, 1]) has too many scalar nodes to read: its drawing has one box per neuron."""
    from chainrule.liveview.graph import layout_source
    model = MLP(2, [8, 8, 1], activation="relu", output_activation="linear")
    graph = point_graph(model, hinge_loss, [0.5, -1.0], 1.0)
    source, boxes, node_box = layout_source(graph)
    assert graph.grouped and len(boxes) == 2 + 8 + 8 + 1 + 1
    assert "L1.N4 relu" in source and "L0.N0.w0" not in source
    assert set(node_box) == {box["id"] for box in boxes}


def test_trainer_refuses_bad_values_and_changes_nothing():
    """A refused command raises LiveError with a clear message and leaves every setting as it was."""
    trainer = make_trainer()
    trainer.start()
    try:
        before = dict(trainer.settings), trainer.model.nouts, len(trainer.points)
        bad = [({"action": "set", "lr": float("nan")}, "lr must be a finite number"),
               ({"action": "set", "lr": -1}, "lr must be > 0"),
               ({"action": "set", "hidden": "10000"}, "1 to 32 neurons"),
               ({"action": "set", "hidden": "2,2,2,2,2"}, "at most 4 hidden layers"),
               ({"action": "set", "lr": 0.5, "batch_size": -3}, "batch_size must be 0"),
               ({"action": "set", "speed": 0}, "speed must be 1 to"),
               ({"action": "set", "activation": "softmax"}, "unknown activation"),
               ({"action": "add_point", "x": float("inf"), "y": 0, "label": 0}, "x must be a finite number"),
               ({"action": "add_point", "x": 0, "y": 0, "label": 7}, "label must be a class"),
               ({"action": "remove_point", "index": 40}, "index must be a point's number"),
               ({"action": "select", "index": "0; drop"}, "index must be a number"),
               ({"action": "fly"}, "unknown action"),
               ({"action": "play", "lr": 1}, "play takes no values")]
        for body, message in bad:
            with pytest.raises(LiveError, match=message):
                trainer.command(body)
        assert (dict(trainer.settings), trainer.model.nouts, len(trainer.points)) == before
        assert trainer.optimizer.lr == before[0]["lr"]
    finally:
        trainer.close()


# --- the server ---------------------------------------------------------------------------------------

def test_server_binds_loopback_only_with_a_long_random_token(server):
    """It listens on 127.0.0.1, and its URL carries a token of at least 32 characters."""
    assert server.httpd.server_address[0] == "127.0.0.1"
    assert server.url == f"http://127.0.0.1:{server.port}/?token={server.token}"
    assert len(server.token) >= 32
    assert LiveServer(make_trainer()).token != server.token


def test_missing_or_wrong_token_is_refused(server):
    """Without the token, or with a wrong one, every path answers 403 and a play command is not obeyed."""
    for token in (False, "wrong", server.token[:-1]):
        for method, path in (("GET", "/"), ("GET", "/api/frame"), ("GET", "/assets/app.js")):
            status, body = request(server, method, path, token=token)
            assert status == 403 and "token" in body["error"]
        status, body = request(server, "POST", "/api/control", {"action": "play"}, token=token)
        assert status == 403
    assert frame(server)["running"] is False
    status, page = request(server, "GET", f"/?token={server.token}", token=False)
    assert status == 200 and "chainrule live" in page


def test_foreign_origin_and_foreign_host_are_refused(server):
    """A script from another site (Origin) or a rebound domain name (Host) is refused, token or not."""
    status, body = request(server, "POST", "/api/control", {"action": "play"},
                           headers={"Origin": "http://evil.example"})
    assert status == 403 and "other web pages" in body["error"]
    status, body = request(server, "GET", "/api/frame", headers={"Host": f"evil.example:{server.port}"})
    assert status == 403 and "Host" in body["error"]
    assert frame(server)["running"] is False
    status, body = request(server, "POST", "/api/control", {"action": "play"},
                           headers={"Origin": f"http://127.0.0.1:{server.port}"})
    assert status == 200 and body == {"ok": True}


def test_bad_control_values_give_a_clear_error_and_training_goes_on(server):
    """Bad values answer 400 with the reason; a running training keeps running with its settings."""
    assert request(server, "POST", "/api/control", {"action": "play"})[0] == 200
    start = frame(server)
    for body, message in ((b'{"action": "set", "lr": NaN}', "finite"),
                          ({"action": "set", "hidden": "10000"}, "1 to 32 neurons"),
                          (b"not json", "JSON object"),
                          (b"[1, 2]", "JSON object")):
        status, answer = request(server, "POST", "/api/control", body)
        assert status == 400 and message in answer["error"]
    status, answer = request(server, "POST", "/api/control", b"{" + b" " * 5000 + b"}")
    assert status == 413
    later = frame(server, after=start["v"])
    deadline = time.monotonic() + 30
    while later["step"] <= start["step"] and time.monotonic() < deadline:
        later = frame(server, after=later["v"])
    assert later["running"] and later["step"] > start["step"]
    assert later["settings"] == start["settings"] and later["hidden"] == start["hidden"]


def test_frames_and_layouts_are_served_as_json(server):
    """A frame holds the step, the curves, the boundary grid and the point's graph; its layout is an SVG."""
    request(server, "POST", "/api/control", {"action": "step"})
    f = frame(server)
    assert f["step"] == 1 and len(f["curves"]["loss"]) == 1
    assert len(f["grid"]["values"]) == f["grid"]["n"] ** 2
    assert len(f["graph"]["data"]) == len(f["graph"]["grad"]) > 10
    deadline = time.monotonic() + 60
    while not f["graph"]["ready"] and time.monotonic() < deadline:
        f = frame(server, after=f["v"])
    status, layout = request(server, "GET", f"/api/layout?id={f['graph']['layout']}")
    assert status == 200 and layout["svg"].lstrip().startswith("<?xml") and len(layout["node_box"]) == len(f["graph"]["data"])


def test_server_shuts_down_cleanly(server):
    """close() stops both threads, frees the port, and a second close() is harmless."""
    port = server.port
    server.close()
    assert not server.trainer.alive and not server._thread.is_alive()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    with socket.socket() as s:          # the port can be bound again at once
        s.bind(("127.0.0.1", port))
    server.close()


def test_cli_live_prints_the_url_and_stops_cleanly_on_ctrl_c():
    """`chainrule live --no-browser` prints a tokened URL that serves frames; SIGINT ends it with exit 0."""
    env = dict(os.environ, PYTHONPATH=str(SRC))
    proc = subprocess.Popen([sys.executable, "-m", "chainrule", "live", "--no-browser", "--hidden", "4",
                             "--activation", "tanh", "--steps", "5", "--n-samples", "30"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = None
        for _ in range(5):
            line = proc.stdout.readline()
            if line.startswith("open "):
                url = line.split()[1]
                break
        assert url and url.startswith("http://127.0.0.1:") and "?token=" in url
        port, token = int(url.split(":")[2].split("/")[0]), url.split("token=")[1]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        conn.request("GET", f"/api/frame?token={token}", headers={"Host": f"127.0.0.1:{port}"})
        assert conn.getresponse().status == 200
        conn.close()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped after" in out and "Traceback" not in err


def test_cli_live_refuses_a_dataset_it_cannot_draw(capsys):
    """digits has 64 inputs: a one-line error says which datasets live can draw."""
    from chainrule.cli import main
    assert main(["live", "--dataset", "digits", "--no-browser"]) == 1
    assert "choose a dataset with 2" in capsys.readouterr().err


def test_expanding_a_neuron_is_checked_and_draws_its_nodes():
    """expand takes a real layer and neuron (else a clear error); its drawing holds that neuron's nodes."""
    from chainrule.liveview.graph import layout_source
    trainer = make_trainer(hidden=(8, 8))
    trainer.start()
    try:
        with pytest.raises(LiveError, match="layer 1 has neurons 0 to 7, got 8"):
            trainer.command({"action": "expand", "layer": 1, "neuron": 8})
        assert trainer.expanded is None
        before = trainer.wait_frame(-1, 10)["v"]
        trainer.command({"action": "expand", "layer": 1, "neuron": 2})
        assert tuple(trainer.wait_frame(before, 10)["graph"]["expanded"]) == (1, 2)
    finally:
        trainer.close()
    graph = point_graph(trainer.model, mse_loss, [0.5, -1.0], 1.0)
    source, boxes, node_box = layout_source(graph, (1, 2))
    assert "L1.N2.w7*L0.N7.out" in source and "L1.N3" not in source and "L0.N7.out" in source
    assert len(boxes) == 8 + 8 + 7 + 1 + 2 + 8      # weights, products, partial sums, bias, sum and out, inputs


def test_a_callers_no_grad_does_not_reach_the_training_thread():
    """A notebook cell inside no_grad() while the trainer runs: training and the point's graph still record."""
    from chainrule import no_grad
    with no_grad():
        trainer = make_trainer()
        trainer.start()
        try:
            for _ in range(3):
                trainer.command({"action": "step"})
            frame = trainer.wait_frame(-1, 10)
        finally:
            trainer.close()
    assert frame["step"] == 3 and len(frame["graph"]["data"]) > 20
    losses = trainer.history["loss"]
    assert losses[2] < losses[0] and any(g != 0 for g in frame["params"]["grad"])


def test_cli_live_refuses_a_net_too_large_to_draw_and_a_busy_port(capsys):
    """--hidden 100 and a port already taken are one-line errors, before anything starts."""
    from chainrule.cli import main
    assert main(["live", "--hidden", "100", "--no-browser"]) == 1
    assert "1 to 32 neurons" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["live", "--hidden", "4", "--port", str(taken.getsockname()[1]), "--no-browser"]) == 1
    assert "choose another --port" in capsys.readouterr().err
