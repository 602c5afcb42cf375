"""The training loop: micrograd's demo, agreement with micrograd and PyTorch, seeding, callbacks, logging."""

import gc
import random
import re
import sys

import numpy as np
import pytest

from chainrule import MLP
from chainrule.data import make_blobs, make_moons
from chainrule.losses import hinge_loss, mse_loss
from chainrule.optim import SGD, Adam
from chainrule.train import History, accuracy, evaluate, fit, predict, seed_everything

DEMO_SEED = 1337        # the seed `chainrule demo` uses


def _demo_model():
    return MLP(2, [16, 16, 1], activation="relu", output_activation="linear")


def test_micrograd_demo_reaches_100_percent():
    """micrograd's demo with chainrule's pieces (100 moons, hinge + 1e-4 L2, decaying SGD, 100
    full-batch steps, eager) classifies every training point right, with a small final loss."""
    seed_everything(DEMO_SEED)
    X, y = make_moons(100, noise=0.1, seed=DEMO_SEED)
    model = _demo_model()
    opt = SGD(model.parameters(), lr=lambda k: 1.0 - 0.9 * k / 100)
    history = fit(model, X, y, loss="hinge", optimizer=opt, steps=100, l2=1e-4, progress=False, seed=DEMO_SEED)
    assert len(history) == 100
    assert history.accuracy[-1] == 1.0
    assert accuracy(predict(model, X), y) == 1.0
    loss, acc = evaluate(model, X, y, loss="hinge", l2=1e-4)
    assert acc == 1.0 and loss < 0.05
    assert history.loss[-1] < history.loss[0] / 20


def test_fit_matches_micrograd_step_for_step():
    """From the same weights, fit's loop gives the same loss at every step and the same final weights
    as micrograd's own demo loop run on micrograd's own Value (an independent implementation)."""
    micrograd_engine = pytest.importorskip("micrograd.engine")
    micrograd_nn = pytest.importorskip("micrograd.nn")
    X, y = make_moons(20, noise=0.1, seed=3)
    model = _demo_model()
    ref = micrograd_nn.MLP(2, [16, 16, 1])
    for p, q in zip(model.parameters(), ref.parameters()):
        q.data = p.data
    steps, alpha = 4, 1e-4

    ref_losses = []
    yb = (2 * y - 1).tolist()
    for k in range(steps):                       # micrograd's demo.ipynb loop, verbatim in spirit
        inputs = [list(map(micrograd_engine.Value, xrow)) for xrow in X.tolist()]
        scores = list(map(ref, inputs))
        losses = [(1 + -yi * scorei).relu() for yi, scorei in zip(yb, scores)]
        data_loss = sum(losses) * (1.0 / len(losses))
        reg_loss = alpha * sum((p * p for p in ref.parameters()))
        total = data_loss + reg_loss
        ref.zero_grad()
        total.backward()
        lr = 1.0 - 0.9 * k / 100
        for p in ref.parameters():
            p.data -= lr * p.grad
        ref_losses.append(total.data)

    opt = SGD(model.parameters(), lr=lambda k: 1.0 - 0.9 * k / 100)
    history = fit(model, X, y, optimizer=opt, steps=steps, l2=alpha, progress=False)
    np.testing.assert_allclose(history.loss, ref_losses, rtol=1e-12, atol=0)
    np.testing.assert_allclose([p.data for p in model.parameters()], [q.data for q in ref.parameters()],
                               rtol=1e-12, atol=1e-14)


def test_fit_matches_pytorch_cross_entropy_adam_minibatches():
    """Several classes, softmax cross-entropy, L2 and Adam on minibatches: fit's losses and final weights
    equal PyTorch float64 doing the same steps on the same batches."""
    torch = pytest.importorskip("torch")
    X, y = make_blobs(24, seed=5)
    model = MLP(2, [5, 3], activation="tanh", output_activation="linear")
    l2, steps, batch = 1e-3, 7, 8
    seen = []

    def spy(scores, labels):                 # records each batch fit trains on
        seen.append(list(labels))
        from chainrule.losses import softmax_cross_entropy
        return softmax_cross_entropy(scores, labels)

    W = [torch.tensor([[w.data for w in n.w] for n in layer.neurons], dtype=torch.float64, requires_grad=True)
         for layer in model.layers]
    B = [torch.tensor([n.b.data for n in layer.neurons], dtype=torch.float64, requires_grad=True)
         for layer in model.layers]
    opt = Adam(model.parameters(), lr=0.05)
    history = fit(model, X, y, loss=spy, optimizer=opt, steps=steps, batch_size=batch, l2=l2, progress=False,
                  seed=11)
    # fit's batches are rows of X picked by label lists; rebuild them from the same minibatch order.
    from chainrule.data import minibatches
    order = [yb for e in range(3) for _, yb in minibatches(np.arange(len(X)), y, batch, seed=11 + e)]
    idx_batches = [xb for e in range(3) for xb, _ in minibatches(np.arange(len(X)), y, batch, seed=11 + e)]
    assert [list(map(int, s)) for s in seen] == [list(map(int, o)) for o in order][:steps]

    topt = torch.optim.Adam(W + B, lr=0.05)
    Xt, yt = torch.tensor(X), torch.tensor(y)
    torch_losses = []
    for k in range(steps):
        idx = torch.tensor(idx_batches[k])
        h = torch.tanh(Xt[idx] @ W[0].T + B[0])
        logits = h @ W[1].T + B[1]
        loss = torch.nn.functional.cross_entropy(logits, yt[idx]) + l2 * sum((p * p).sum() for p in W + B)
        topt.zero_grad()
        loss.backward()
        topt.step()
        torch_losses.append(loss.item())
    np.testing.assert_allclose(history.loss, torch_losses, rtol=1e-10)
    ours = [p.data for p in model.parameters()]
    theirs = []
    for w, b in zip(W, B):
        for row, bias in zip(w.detach().numpy(), b.detach().numpy()):
            theirs.extend(row.tolist() + [float(bias)])
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)


def test_seed_repeats_data_weights_and_batches_exactly():
    """One seed makes a whole minibatch run repeat exactly; another seed gives a different run."""
    def run(seed):
        seed_everything(seed)
        X, y = make_moons(20, noise=0.2, seed=seed)
        model = MLP(2, [4, 1], activation="relu", output_activation="linear")
        h = fit(model, X, y, steps=8, batch_size=6, progress=False, seed=seed)
        return h.loss, [p.data for p in model.parameters()]

    assert run(4) == run(4)
    assert run(4)[0] != run(5)[0]


def test_minibatches_cover_every_example_once_per_epoch():
    """With batch_size 4 on 10 examples, steps come in epochs of 4 + 4 + 2 examples, each epoch seeing
    every example exactly once, in an order that changes from epoch to epoch."""
    X = np.arange(10.0).reshape(-1, 1)
    seen = []

    def spy(preds, targets):
        seen.append(list(targets))
        return mse_loss(preds, targets)

    model = MLP(1, [1], activation="linear")
    fit(model, X, np.arange(10.0), loss=spy, steps=6, batch_size=4, progress=False, seed=0,
        optimizer=SGD(model.parameters(), lr=0.0))
    assert [len(b) for b in seen] == [4, 4, 2, 4, 4, 2]
    epochs = [sum(seen[0:3], []), sum(seen[3:6], [])]
    assert all(sorted(e) == list(range(10)) for e in epochs)
    assert epochs[0] != epochs[1]


def test_hinge_converts_01_labels_and_bce_converts_pm1_labels():
    """0/1 labels train a hinge model exactly as -1/+1 labels do, and -1/+1 train a bce model exactly
    as 0/1 do: fit converts labels to what each loss needs."""
    X, y01 = make_moons(16, noise=0.1, seed=2)
    ypm = 2 * y01 - 1

    def run(loss, labels):
        random.seed(9)
        model = MLP(2, [4, 1], activation="relu", output_activation="linear")
        return fit(model, X, labels, loss=loss, steps=5, progress=False).loss

    assert run("hinge", y01) == run("hinge", ypm)
    assert run("bce", y01) == run("bce", ypm)


def test_learning_rate_history_follows_the_default_schedule():
    """Without an optimizer, fit uses micrograd's SGD rate 1.0 - 0.9*k/steps and records it per step."""
    X, y = make_moons(8, seed=0)
    h = fit(MLP(2, [3, 1], activation="relu", output_activation="linear"), X, y, steps=4, progress=False)
    assert h.lr == [1.0 - 0.9 * k / 4 for k in range(4)]


def test_callback_stops_early_and_sees_history():
    """A callback gets (step, history, model) after each step; returning True stops after that step,
    which is recorded, evaluated on the test set and logged."""
    X, y = make_moons(12, noise=0.1, seed=1)
    calls = []
    model = MLP(2, [4, 1], activation="relu", output_activation="linear")

    def cb(step, history, m):
        calls.append((step, len(history), m is model))
        return step == 3

    h = fit(model, X, y, steps=50, callbacks=[cb], X_test=X, y_test=y, progress=False)
    assert calls == [(k, k + 1, True) for k in range(4)]
    assert len(h) == 4 and h.stopped_early == 3
    assert h.test_step == [0, 3]


def test_test_set_is_evaluated_at_log_steps_and_the_end_without_a_graph():
    """Test loss/accuracy are recorded at every log step and the last; the last equals evaluate()
    of the trained model, and no parameter gradient comes from the test data."""
    X, y = make_moons(20, noise=0.1, seed=1)
    Xt, yt = make_moons(10, noise=0.1, seed=2)
    model = MLP(2, [4, 1], activation="relu", output_activation="linear")
    h = fit(model, X, y, steps=12, log_every=5, X_test=Xt, y_test=yt, l2=1e-3, progress=False)
    assert h.test_step == [0, 5, 10, 11]
    assert (h.test_loss[-1], h.test_accuracy[-1]) == evaluate(model, Xt, yt, l2=1e-3)


def test_log_line_format_and_quiet_mode(capsys, monkeypatch):
    """Without tqdm the loop prints the fixed log line every log_every steps and on the last step, on
    stdout only; progress=False prints nothing at all."""
    monkeypatch.setitem(sys.modules, "tqdm", None)          # as if tqdm were not installed
    X, y = make_moons(10, seed=0)
    fit(MLP(2, [3, 1], activation="relu", output_activation="linear"), X, y, steps=7, log_every=3)
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert [int(line.split()[1]) for line in lines] == [0, 3, 6]
    assert all(re.fullmatch(r"step \d+ \| loss \d+\.\d{4} \| acc \d+\.\d% \| lr [0-9.e-]+", line) for line in lines)
    assert err == ""
    fit(MLP(2, [3, 1]), X, y, steps=3, progress=False)
    assert capsys.readouterr() == ("", "")


def test_progress_bar_goes_to_stderr_with_log_lines_on_stdout(capsys, monkeypatch):
    """With tqdm installed and stderr a terminal, the bar (with loss and accuracy) is drawn on stderr,
    the log lines stay on stdout."""
    pytest.importorskip("tqdm")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    X, y = make_moons(10, seed=0)
    fit(MLP(2, [3, 1], activation="relu", output_activation="linear"), X, y, steps=3, log_every=2)
    out, err = capsys.readouterr()
    assert [line.split(" |")[0] for line in out.splitlines()] == ["step 0", "step 2"]
    assert "3/3" in err and "loss=" in err and "acc=" in err


def test_cycle_collector_state_is_restored_even_after_an_error():
    """fit pauses Python's cycle collector while it trains and turns it back on afterwards, also when
    a callback raises."""
    X, y = make_moons(6, seed=0)
    assert gc.isenabled()

    def boom(step, history, model):
        assert not gc.isenabled()
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fit(MLP(2, [2, 1]), X, y, steps=2, callbacks=[boom], progress=False)
    assert gc.isenabled()


def test_compiled_training_equals_eager_training():
    """compiled=True (the loss recorded once and replayed with numpy) follows the eager run's losses
    and weights, for hinge on full batches and for cross-entropy on shuffled minibatches."""
    pytest.importorskip("chainrule.replay")
    cases = [(make_moons(30, noise=0.1, seed=0), [8, 1], "hinge", None),
             (make_blobs(18, seed=0), [6, 3], "cross_entropy", 6)]
    for (X, y), widths, loss, batch in cases:
        runs = []
        for compiled in (False, True):
            random.seed(21)
            model = MLP(2, widths, activation="relu", output_activation="linear")
            h = fit(model, X, y, loss=loss, steps=10, batch_size=batch, l2=1e-4, progress=False,
                    compiled=compiled, seed=3, optimizer=SGD(model.parameters(), lr=0.3, momentum=0.5))
            runs.append((h, [p.data for p in model.parameters()]))
        (h_eager, w_eager), (h_comp, w_comp) = runs
        np.testing.assert_allclose(h_comp.loss, h_eager.loss, rtol=1e-9)
        assert h_comp.accuracy == h_eager.accuracy
        np.testing.assert_allclose(w_comp, w_eager, rtol=1e-9, atol=1e-12)


def test_predict_and_compiled_predict():
    """predict returns a numpy array of the model's outputs, (n,) for one output and (n, C) for C;
    the compiled replay gives the same numbers."""
    X = np.random.RandomState(0).normal(size=(7, 2))
    for widths in ([4, 1], [4, 3]):
        model = MLP(2, widths)
        eager = predict(model, X)
        by_hand = np.array([[v.data for v in np.atleast_1d(model(x.tolist()))] for x in X]).squeeze()
        assert eager.shape == ((7,) if widths[-1] == 1 else (7, 3))
        np.testing.assert_array_equal(eager, by_hand)
        if widths[-1] == 1:
            assert not model.parameters()[0].grad   # no graph was kept, nothing accumulated
    pytest.importorskip("chainrule.replay")
    for widths in ([4, 1], [4, 3]):
        model = MLP(2, widths)
        np.testing.assert_allclose(predict(model, X, compiled=True), predict(model, X), rtol=1e-12, atol=1e-14)


def test_accuracy_counts_binary_and_multiclass():
    """accuracy thresholds single scores at 0 (0/1 or -1/+1 labels) and takes the argmax of score rows."""
    assert accuracy([0.3, -0.2, 2.0, -1.0], [1, 0, 0, 0]) == 0.75
    assert accuracy(np.array([0.3, -0.2]), np.array([1, -1])) == 1.0
    assert accuracy([[1.0, 2.0, 0.0], [0.0, 0.0, 5.0]], [1, 0]) == 0.5
    with pytest.raises(ValueError, match="3 examples but y has 2"):
        accuracy([1.0, 2.0, 3.0], [1, 0])


@pytest.mark.parametrize("kwargs, message", [
    (dict(loss="nope"), "unknown loss 'nope'; choose one of: bce, cross_entropy, hinge, mse, sse"),
    (dict(loss="cross_entropy"), "needs one output per class"),
    (dict(optimizer="rmsprop"), "unknown optimizer 'rmsprop'"),
    (dict(steps=0), "steps must be a positive whole number"),
    (dict(batch_size=-1), "batch_size must be"),
    (dict(X_test=[[0.0, 0.0]]), "give both X_test and y_test"),
])
def test_fit_rejects_bad_arguments_with_clear_errors(kwargs, message):
    """Each mistake in fit's arguments raises a ValueError that names it."""
    X, y = make_moons(6, seed=0)
    with pytest.raises(ValueError, match=re.escape(message)):
        fit(MLP(2, [2, 1]), X, y, progress=False, **kwargs)


def test_fit_rejects_mismatched_data_and_labels():
    """Wrong input width, three classes for a one-output hinge model, and a multi-output model with
    hinge each get an error that says what to do."""
    X, y = make_blobs(9, seed=0)
    with pytest.raises(ValueError, match="the model takes 3 inputs"):
        fit(MLP(3, [2, 1]), X, y, progress=False)
    with pytest.raises(ValueError, match="two classes .*cross_entropy"):
        fit(MLP(2, [2, 1]), X, y, progress=False)
    with pytest.raises(ValueError, match="last layer has 3 outputs; for several classes use loss='cross_entropy'"):
        fit(MLP(2, [2, 3]), X, y, progress=False)


def test_history_repr_and_dict():
    """History prints its last numbers and turns into plain lists for JSON."""
    h = History(loss=[1.0, 0.25], accuracy=[0.5, 1.0], lr=[1.0, 0.5])
    assert repr(h) == "History(2 steps, loss 0.2500, acc 100.0%)"
    assert h.to_dict()["loss"] == [1.0, 0.25] and len(h) == 2


def _count_recordings(monkeypatch) -> list:
    """Spy on the replay's recording steps: the returned list gets the kind of each recording
    ("example" for one example's objective, or the batch size of a whole-batch recording)."""
    replay = pytest.importorskip("chainrule.replay")
    sizes = []
    real_batched, real_compiled = replay.Batched._record, replay.Compiled._record

    def record_batched(self, arrays):
        sizes.append("example")
        return real_batched(self, arrays)

    def record_compiled(self, args):
        sizes.append(len(args[0]))
        return real_compiled(self, args)
    monkeypatch.setattr(replay.Batched, "_record", record_batched)
    monkeypatch.setattr(replay.Compiled, "_record", record_compiled)
    return sizes


def test_compiled_training_records_one_example_once(monkeypatch):
    """compiled=True records one example's loss once, whatever the batch sizes (4, then 2 for 10
    examples in batches of 4); a loss function of one's own is recorded per batch size instead."""
    sizes = _count_recordings(monkeypatch)
    X, y = make_moons(10, noise=0.1, seed=0)
    fit(MLP(2, [4, 1], activation="relu", output_activation="linear"), X, y, steps=9, batch_size=4,
        compiled=True, progress=False, seed=0)
    assert sizes == ["example"]
    sizes.clear()

    def my_hinge(scores, targets):
        return hinge_loss(scores, targets)
    fit(MLP(2, [4, 1], activation="relu", output_activation="linear"), X, np.where(y > 0, 1.0, -1.0),
        loss=my_hinge, steps=9, batch_size=4, compiled=True, progress=False, seed=0)
    assert sizes == [4, 2]


def test_compiled_cross_entropy_records_once_and_equals_eager(monkeypatch):
    """With cross-entropy on shuffled minibatches, compiled=True passes one-hot float targets, so one
    recording of one example serves every batch (9 examples in batches of 4: sizes 4 and 1, over 5
    epochs of different class orders), and the losses, accuracies and weights equal eager training's."""
    X, y = make_blobs(9, seed=0)
    sizes = _count_recordings(monkeypatch)
    runs = []
    for compiled in (False, True):
        random.seed(4)
        model = MLP(2, [5, 3], activation="relu", output_activation="linear")
        h = fit(model, X, y, loss="cross_entropy", steps=15, batch_size=4, l2=1e-3, compiled=compiled,
                progress=False, seed=2, optimizer=Adam(model.parameters(), lr=0.05))
        runs.append((h, [p.data for p in model.parameters()], list(sizes)))
    (h_eager, w_eager, eager_sizes), (h_comp, w_comp, comp_sizes) = runs
    assert eager_sizes == [] and comp_sizes == ["example"]
    np.testing.assert_allclose(h_comp.loss, h_eager.loss, rtol=1e-12, atol=0)
    assert h_comp.accuracy == h_eager.accuracy
    np.testing.assert_allclose(w_comp, w_eager, rtol=1e-12, atol=1e-12)


def test_compiled_fit_learns_digits():
    """fit(compiled=True) trains MLP(64, [32, 10]) with cross-entropy and Adam on shuffled minibatches
    of 32 of the 8x8 digits (30 epochs, a few seconds) to more than 95% accuracy on held-out images."""
    pytest.importorskip("sklearn")
    from chainrule.data import load_digits, train_test_split
    X, y = load_digits()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, seed=0)
    mean = X_train.mean(axis=0)
    random.seed(0)
    model = MLP(64, [32, 10], activation="relu", output_activation="linear")
    steps = 30 * 43                             # 43 batches of 32 (the last one 3) per epoch
    opt = Adam(model.parameters(), lr=lambda k: 0.01 * (1 - 0.9 * k / steps))
    history = fit(model, X_train - mean, y_train, loss="cross_entropy", optimizer=opt, steps=steps,
                  batch_size=32, compiled=True, progress=False, seed=0)
    assert history.loss[-1] < history.loss[0] / 5
    assert accuracy(predict(model, X_test - mean, compiled=True), y_test) > 0.95


@pytest.mark.parametrize("with_callback", [False, True])
def test_compiled_fit_leaves_every_gradient_as_eager_fit_does(with_callback):
    """Parameters outside the optimizer are not zeroed between steps, so eagerly their .grad sums the
    steps' gradients; compiled fit ends with the same numbers (and at every callback)."""
    X = np.random.default_rng(0).normal(size=(16, 2))
    y = (X[:, 0] > 0).astype(int)
    seen = {}
    for compiled in (False, True):
        random.seed(0)
        model = MLP(2, [3, 1])
        grads = []
        callbacks = [lambda k, history, m: grads.append([p.grad for p in m.parameters()])] if with_callback else None
        fit(model, X, y, loss="hinge", optimizer=SGD(model.layers[1].parameters(), lr=0.1), batch_size=8,
            steps=3, compiled=compiled, progress=False, seed=0, callbacks=callbacks)
        seen[compiled] = grads + [[p.grad for p in model.parameters()]]
    assert np.abs(np.array(seen[False][-1][:9])).max() > 0          # the first layer's gradients are kept
    np.testing.assert_allclose(seen[True], seen[False], rtol=1e-12, atol=1e-12)
