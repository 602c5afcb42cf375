"""Compiled replay vs eager, micrograd, PyTorch and hand-written numpy (a benchmark, not a test).

Part 1 is micrograd's demo workload: 100 two-moons points (noise 0.1), labels mapped to +-1,
``MLP(2, [16, 16, 1])`` ReLU/linear, hinge ``mean(relu(1 - y*s)) + 1e-4 * sum(p*p)``, SGD with
``lr = 1.0 - 0.9*k/100``, 100 full-batch steps. Every contestant starts from the same weights and
runs the whole step (forward, zero grads, backward, update):

- micrograd 0.1.0 (PyPI) and chainrule eager: a few steps only (about a second per step);
- chainrule compiled: ``chainrule.compile`` of the same scalar loss, the plain training loop;
- PyTorch: CPU, float64, one thread, a vectorised tensor MLP;
- numpy by hand: the same MLP's forward and backward written with matrices.

It prints seconds per step (median over repetitions, same process), the ratios, and the final
losses of the 100-step runs (which must agree: same maths). Part 2 trains the digits dataset
(1,797 8x8 images, ``MLP(64, [32, 10])``, softmax cross-entropy, minibatches) with
``fit(..., compiled=True)``, and prints the time and test accuracy.

    python benchmarks/bench_replay.py            # about 1-2 minutes
    python benchmarks/bench_replay.py --quick    # fewer repetitions, no digits
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time

import numpy as np

import chainrule
from chainrule import MLP
from chainrule.losses import hinge_loss, l2_penalty
from chainrule.optim import SGD, Adam

L2 = 1e-4
SIZES = [2, 16, 16, 1]


def lr_at(k: int) -> float:
    return 1.0 - 0.9 * k / 100


def moons(seed: int):
    try:
        from chainrule.data import make_moons
        X, y = make_moons(100, noise=0.1, seed=seed)
    except ImportError:
        from sklearn.datasets import make_moons
        X, y = make_moons(100, noise=0.1, random_state=seed)
    return np.asarray(X, dtype=float), (np.asarray(y) * 2 - 1).astype(float)


def initial_weights(seed: int):
    """Per layer (W, b) as numpy arrays, from a chainrule MLP (micrograd's init: uniform(-1, 1))."""
    random.seed(seed)
    model = MLP(2, SIZES[1:], activation="relu", output_activation="linear")
    return [(np.array([[w.data for w in n.w] for n in layer.neurons]), np.array([n.b.data for n in layer.neurons]))
            for layer in model.layers]


def load_into(model, weights):
    for layer, (W, b) in zip(model.layers, weights):
        for neuron, row, bias in zip(layer.neurons, W, b):
            for w, v in zip(neuron.w, row):
                w.data = float(v)
            neuron.b.data = float(bias)


# --- the contestants: each returns (seconds per step for each step run, final loss) ----------------

def run_micrograd(weights, X, y, steps):
    from micrograd.engine import Value as MValue
    from micrograd.nn import MLP as MMLP
    model = MMLP(2, SIZES[1:])
    load_into(model, weights)
    Xl, yl = X.tolist(), y.tolist()
    times, loss = [], None
    for k in range(steps):
        t0 = time.perf_counter()
        scores = [model(list(map(MValue, row))) for row in Xl]
        losses = [(1 + -yi * si).relu() for yi, si in zip(yl, scores)]
        loss = sum(losses) * (1.0 / len(losses)) + L2 * sum(p * p for p in model.parameters())
        model.zero_grad()
        loss.backward()
        for p in model.parameters():
            p.data -= lr_at(k) * p.grad
        times.append(time.perf_counter() - t0)
    return times, loss.data


def chainrule_model(weights):
    model = MLP(2, SIZES[1:], activation="relu", output_activation="linear")
    load_into(model, weights)
    return model


def chainrule_loss(model):
    params = model.parameters()

    def loss(X, y):
        return hinge_loss([model(x) for x in X], y) + l2_penalty(params, L2)
    return loss


def run_chainrule(weights, X, y, steps, compiled):
    model = chainrule_model(weights)
    loss_fn = chainrule_loss(model)
    step = chainrule.compile(loss_fn) if compiled else loss_fn
    args = (X, y) if compiled else (X.tolist(), y.tolist())
    opt = SGD(model.parameters(), lr=lr_at)
    times, loss = [], None
    if compiled:
        step(*args)                      # the recording call is timed separately
    for k in range(steps):
        t0 = time.perf_counter()
        loss = step(*args)
        model.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return times, loss.data


def run_torch(weights, X, y, steps):
    import torch
    torch.set_num_threads(1)
    params = []
    for W, b in weights:
        params += [torch.tensor(W, requires_grad=True), torch.tensor(b, requires_grad=True)]
    Xt, yt = torch.tensor(X), torch.tensor(y)
    times, loss = [], None
    for k in range(steps):
        t0 = time.perf_counter()
        h = Xt
        for i in range(0, len(params), 2):
            h = torch.addmm(params[i + 1], h, params[i].T)
            if i < len(params) - 2:
                h = torch.relu(h)
        loss = torch.relu(1 - yt * h[:, 0]).mean() + L2 * sum((p * p).sum() for p in params)
        for p in params:
            p.grad = None
        loss.backward()
        with torch.no_grad():
            for p in params:
                p -= lr_at(k) * p.grad
        times.append(time.perf_counter() - t0)
    return times, loss.item()


def run_numpy(weights, X, y, steps):
    params = [(W.copy(), b.copy()) for W, b in weights]
    n = len(X)
    times, loss = [], None
    for k in range(steps):
        t0 = time.perf_counter()
        hs, pre = [X], []
        for i, (W, b) in enumerate(params):
            z = hs[-1] @ W.T + b
            pre.append(z)
            hs.append(np.maximum(z, 0.0) if i < len(params) - 1 else z)
        s = hs[-1][:, 0]
        margin = 1 - y * s
        loss = np.maximum(margin, 0.0).mean() + L2 * sum((W * W).sum() + (b * b).sum() for W, b in params)
        g = (-y * (margin > 0) / n)[:, None]
        grads = []
        for i in range(len(params) - 1, -1, -1):
            W, b = params[i]
            grads.append((g.T @ hs[i] + 2 * L2 * W, g.sum(axis=0) + 2 * L2 * b))
            if i:
                g = (g @ W) * (pre[i - 1] > 0)
        lr = lr_at(k)
        for (W, b), (gW, gb) in zip(params, reversed(grads)):
            W -= lr * gW
            b -= lr * gb
        times.append(time.perf_counter() - t0)
    return times, float(loss)


# --- part 2: digits --------------------------------------------------------------------------------

def digits(seed: int, batch: int, epochs: int):
    from chainrule.data import load_digits, train_test_split
    from chainrule.train import accuracy, fit, predict

    X, y = load_digits()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, seed=seed)
    mean = X_train.mean(axis=0)                 # centred pixels train a little better
    X_train, X_test = X_train - mean, X_test - mean

    t0 = time.perf_counter()
    random.seed(seed)
    model = MLP(64, [32, 10], activation="relu", output_activation="linear")
    steps = epochs * -(-len(X_train) // batch)  # every batch of every epoch, the last shorter one too
    opt = Adam(model.parameters(), lr=lambda k: 0.01 * (1 - 0.9 * k / steps))
    # compiled=True passes the labels as one-hot float rows, so the loss is recorded once per batch
    # size (two here) and every shuffled batch replays it.
    fit(model, X_train, y_train, loss="cross_entropy", optimizer=opt, steps=steps, batch_size=batch,
        compiled=True, progress=False, seed=seed)
    test_accuracy = accuracy(predict(model, X_test, compiled=True), y_test)
    total = time.perf_counter() - t0
    return total, steps, test_accuracy, len(X_train), len(X_test)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions of the 100-step runs (median taken)")
    parser.add_argument("--steps", type=int, default=100, help="training steps per repetition")
    parser.add_argument("--slow-steps", type=int, default=3, help="steps timed for micrograd and chainrule eager")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-digits", action="store_true", help="skip part 2")
    parser.add_argument("--quick", action="store_true", help="2 repetitions, 2 slow steps, no digits")
    args = parser.parse_args(argv)
    if args.quick:
        args.reps, args.slow_steps, args.no_digits = 2, 2, True

    print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}; numpy {np.__version__}")
    X, y = moons(args.seed)
    weights = initial_weights(args.seed)

    t0 = time.perf_counter()
    model = chainrule_model(weights)
    recorder = chainrule.compile(chainrule_loss(model))
    recorder(X, y)
    print(f"recording: {time.perf_counter() - t0:.3f} s  ({recorder!r})")

    per_step, best, final = {}, {}, {}
    for name, run in [("micrograd 0.1.0", lambda: run_micrograd(weights, X, y, args.slow_steps)),
                      ("chainrule eager", lambda: run_chainrule(weights, X, y, args.slow_steps, False))]:
        times, _ = run()
        per_step[name], best[name] = statistics.median(times), min(times)
    fast = [("chainrule compiled", lambda: run_chainrule(weights, X, y, args.steps, True)),
            ("PyTorch (1 thread)", lambda: run_torch(weights, X, y, args.steps)),
            ("numpy by hand", lambda: run_numpy(weights, X, y, args.steps))]
    samples = {name: [] for name, _ in fast}
    for _ in range(args.reps):          # interleaved, so load changes hit everyone alike
        for name, run in fast:
            times, final[name] = run()
            samples[name].append(sum(times) / len(times))
    for name in samples:
        per_step[name], best[name] = statistics.median(samples[name]), min(samples[name])

    torch_s, micro_s = per_step["PyTorch (1 thread)"], per_step["micrograd 0.1.0"]
    print(f"\nmicrograd demo, {len(X)} moons, MLP(2, [16, 16, 1]); seconds per training step "
          f"(median of {args.reps} x {args.steps} steps; slow ones {args.slow_steps} steps)")
    print(f"{'':22s}{'s/step':>12s}{'(best)':>12s}{'vs PyTorch':>12s}{'faster than micrograd':>24s}")
    for name, s in per_step.items():
        print(f"{name:22s}{s:12.3e}{best[name]:12.3e}{s / torch_s:11.2f}x{micro_s / s:23.0f}x")
    print("\nloss after", args.steps, "steps:", ", ".join(f"{n} {v:.12f}" for n, v in final.items()))
    spread = max(final.values()) - min(final.values())
    print(f"largest difference between them: {spread:.2e}")

    if not args.no_digits:
        total, n_steps, accuracy, n_train, n_test = digits(args.seed, batch=32, epochs=30)
        print(f"\ndigits: MLP(64, [32, 10]) relu/linear, softmax cross-entropy, Adam 0.01 decaying, "
              f"minibatch 32, 30 epochs, fit(compiled=True); {n_train} train / {n_test} test images")
        print(f"total {total:.1f} s for {n_steps} steps ({total / n_steps * 1e3:.2f} ms each, recording and "
              f"evaluation included); test accuracy {accuracy * 100:.1f}%")
    print(f"load average now: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
