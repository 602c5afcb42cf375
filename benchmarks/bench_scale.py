"""Compiled training at scale: chainrule ``fit(compiled=True)`` vs PyTorch (a benchmark, not a test).

The workload of issue 9, as a new user would try it: a learnable synthetic 10-class task (random
class centroids plus Gaussian noise, fixed seed), an MLP with a ReLU hidden layer and a linear
output, softmax cross-entropy, Adam with lr 1e-3, minibatches of 128, float64, one thread.

- chainrule: ``fit(model, X, y, loss="cross_entropy", optimizer=Adam(model.parameters(), lr=1e-3),
  batch_size=128, compiled=True, seed=SEED)``, the public path.
- PyTorch: CPU, float64, ``torch.set_num_threads(1)``, ``nn.Sequential(Linear, ReLU, Linear)``,
  the same initial weights (copied from the chainrule model), the same batches in the same order
  (the order ``fit`` draws with that seed), ``torch.optim.Adam`` lr 1e-3.

Each library at each size runs in a fresh process per repetition (so peak RSS is its own), the two
libraries alternating (chainrule, PyTorch, chainrule, ...) so that a machine whose speed drifts
during the run weighs on both alike, with BLAS limited to one thread. Each process first trains once
untimed (a warm-up; the first step reported is that run's, the cold start a user sees), then the
timed run. Per size it prints: the first step's seconds (chainrule: recording included), the steady
step time of each (median over repetitions of the median step after the first), their ratio (the
median over repetitions of each pair's own ratio: the two runs of a pair are adjacent in time),
peak RSS of each process, final accuracy on the training set, and the largest difference between
the two libraries' per-step losses (same data, weights and batches: they must agree closely, else
the comparison is not like for like). chainrule's steps are timed by the optimizer itself (an Adam
that notes when each ``step()`` or ``step_arrays()`` ends), not by a callback, because a callback
makes ``fit`` bring the Values up to date after every step. A step's time is from the end of one
update to the end of the next: the whole loop (batch, forward, backward, update, logging). A last
row is micrograd's demo step (chainrule compiled vs PyTorch), from ``bench_replay.py``'s own runners.

    python benchmarks/bench_scale.py                              # the sizes of issue 9
    python benchmarks/bench_scale.py --sizes 16,32,10 --steps 20  # a quick check
    python benchmarks/bench_scale.py --sizes 64,128,10 --timeout 120 --reps 1
    python benchmarks/bench_scale.py --sweep                      # hidden widths and batches up to 1,024

``--sweep`` asks how the step's cost grows: MLP(64, [W, 10]) for hidden widths W = 64 ... 1,024 at batch
128, then MLP(64, [128, 10]) for batches 8 ... 1,024, printing each library's step time, the ratio, and
each library's nanoseconds per multiply-add of the forward pass (batch x weights): a replay whose matrix
products held only up to some size would show a cliff there that PyTorch's column does not.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_SIZES = ["64,128,10", "256,256,10", "784,256,10"]
CLASSES = 10
SEPARATION = 10.0  # typical distance between two class centroids, in noise widths
LR = 1e-3
WARMUP = 1        # runs per process before the timed one(s): their steps warm caches and allocators
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


# --- shared by the parent and the workers -----------------------------------------------------------

def peak_rss_mib() -> float:
    """This process's peak resident memory (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def synthetic_task(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` examples of ``dim`` features in 10 classes: a random centroid per class plus unit noise.

    Two centroids drawn with spread ``s`` lie about ``s * sqrt(2 * dim)`` apart, so ``s`` is chosen to
    put them ``SEPARATION`` noise widths apart whatever ``dim`` is (learnable, not trivial). The
    features are scaled by ``1/sqrt(dim)`` so that first-layer sums stay of order one under
    micrograd's uniform(-1, 1) init.
    """
    rng = np.random.RandomState(seed)
    centroids = rng.normal(scale=SEPARATION / np.sqrt(2 * dim), size=(CLASSES, dim))
    y = rng.randint(CLASSES, size=n)
    X = (centroids[y] + rng.normal(size=(n, dim))) / np.sqrt(dim)
    return X, y.astype(np.int64)


def parse_size(text: str) -> list[int]:
    try:
        widths = [int(w) for w in text.split(",")]
    except ValueError:
        raise SystemExit(f"--sizes: {text!r} is not a comma-separated list of widths (like 64,128,10)") from None
    if len(widths) < 2 or min(widths) < 1 or widths[-1] < 2:
        raise SystemExit(f"--sizes: {text!r} must be inputs,hidden...,classes with at least 2 classes")
    return widths


# --- workers: each runs in its own fresh process and prints one JSON line ---------------------------

def load_into(model, weights) -> None:
    """Copy (W, b) per layer into a chainrule MLP (bench_replay's helper)."""
    sys.path.insert(0, str(HERE))
    from bench_replay import load_into as copy_weights
    copy_weights(model, weights)


def read_spec(spec: dict):
    arrays = np.load(spec["arrays"])
    n_layers = len(spec["widths"]) - 1
    weights = [(arrays[f"W{i}"], arrays[f"b{i}"]) for i in range(n_layers)]
    return arrays["X"], arrays["y"], arrays["order"], weights


def worker_chainrule(spec: dict) -> dict:
    from chainrule import MLP
    from chainrule.optim import Adam
    from chainrule.train import accuracy, fit, predict

    class TimedAdam(Adam):
        """Adam that notes when each update ends, which times fit's steps without a callback."""

        def __init__(self, params, lr):
            super().__init__(params, lr=lr)
            self.ended: list[float] = []

        def step(self):
            super().step()
            self.ended.append(time.perf_counter())

        def step_arrays(self, state, grad):
            super().step_arrays(state, grad)
            self.ended.append(time.perf_counter())

    X, y, _, weights = read_spec(spec)
    widths, steps = spec["widths"], spec["steps"]
    firsts, per_step = [], []
    for rep in range(WARMUP + spec["reps"]):
        model = MLP(widths[0], widths[1:], activation="relu", output_activation="linear")
        load_into(model, weights)
        opt = TimedAdam(model.parameters(), lr=LR)
        start = time.perf_counter()
        history = fit(model, X, y, loss="cross_entropy", optimizer=opt, batch_size=spec["batch"], steps=steps,
                      compiled=True, progress=False, seed=spec["seed"])
        if len(opt.ended) != steps:
            raise SystemExit(f"fit made {steps} steps but called the optimizer's step() or step_arrays() "
                             f"{len(opt.ended)} times: this benchmark cannot time its steps")
        firsts.append(opt.ended[0] - start)
        per_step.append(statistics.median(np.diff(opt.ended).tolist()))
    firsts, per_step = firsts[:1], per_step[WARMUP:]
    return {"first_s": statistics.median(firsts), "step_s": statistics.median(per_step), "step_s_all": per_step,
            "accuracy": accuracy(predict(model, X, compiled=True), y), "losses": list(history.loss),
            "rss_mib": peak_rss_mib()}


def worker_torch(spec: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    X, y, order, weights = read_spec(spec)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    steps = spec["steps"]

    def make_model():
        layers = []
        for i, (W, b) in enumerate(weights):
            linear = torch.nn.Linear(W.shape[1], W.shape[0], dtype=torch.float64)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(W))
                linear.bias.copy_(torch.from_numpy(b))
            layers.append(linear)
            if i < len(weights) - 1:
                layers.append(torch.nn.ReLU())
        return torch.nn.Sequential(*layers)

    firsts, per_step = [], []
    for rep in range(WARMUP + spec["reps"]):
        model = make_model()
        opt = torch.optim.Adam(model.parameters(), lr=LR)
        times, losses = [], []
        for k in range(steps):
            t0 = time.perf_counter()
            idx = torch.from_numpy(order[k])
            loss = torch.nn.functional.cross_entropy(model(Xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t0)
            losses.append(loss.item())
        firsts.append(times[0])
        per_step.append(statistics.median(times[1:]))
    firsts, per_step = firsts[:1], per_step[WARMUP:]
    with torch.no_grad():
        acc = float((model(Xt).argmax(dim=1) == yt).double().mean())
    return {"first_s": statistics.median(firsts), "step_s": statistics.median(per_step), "step_s_all": per_step,
            "accuracy": acc, "losses": losses, "rss_mib": peak_rss_mib()}


def demo_setup(spec: dict):
    sys.path.insert(0, str(HERE))
    import bench_replay
    X, y = bench_replay.moons(spec["seed"])
    return bench_replay, X, y, bench_replay.initial_weights(spec["seed"])


def worker_demo_chainrule(spec: dict) -> dict:
    import chainrule

    bench, X, y, weights = demo_setup(spec)
    t0 = time.perf_counter()
    recorded = chainrule.compile(bench.chainrule_loss(bench.chainrule_model(weights)))
    recorded(X, y)                               # the first step's forward: the recording
    first = time.perf_counter() - t0
    per_step, loss = [], None
    for _ in range(WARMUP + spec["reps"]):
        times, loss = bench.run_chainrule(weights, X, y, spec["steps"], compiled=True)
        per_step.append(statistics.median(times))
    per_step = per_step[WARMUP:]
    return {"first_s": first, "step_s": statistics.median(per_step), "step_s_all": per_step, "final_loss": loss,
            "rss_mib": peak_rss_mib()}


def worker_demo_torch(spec: dict) -> dict:
    bench, X, y, weights = demo_setup(spec)
    firsts, per_step, loss = [], [], None
    for _ in range(WARMUP + spec["reps"]):
        times, loss = bench.run_torch(weights, X, y, spec["steps"])
        firsts.append(times[0])
        per_step.append(statistics.median(times[1:]))
    firsts, per_step = firsts[:1], per_step[WARMUP:]
    return {"first_s": statistics.median(firsts), "step_s": statistics.median(per_step), "step_s_all": per_step,
            "final_loss": loss, "rss_mib": peak_rss_mib()}


WORKERS = {"chainrule": worker_chainrule, "torch": worker_torch,
           "demo-chainrule": worker_demo_chainrule, "demo-torch": worker_demo_torch}


# --- the parent: prepares the data, starts the workers, prints the table ----------------------------

def batch_order(n: int, batch: int, steps: int, seed: int) -> np.ndarray:
    """The example indices of each of ``fit``'s first ``steps`` batches: fit shuffles epoch ``e`` with
    ``minibatches(..., seed=seed + e)``. (If fit's order ever changes, the loss column shows it.)"""
    from chainrule.data import minibatches

    index = np.arange(n)
    batches = []
    for epoch in itertools.count():
        for _, idx in minibatches(index.reshape(-1, 1), index, batch, seed=(seed + epoch) % 2**32):
            batches.append(idx)
            if len(batches) == steps:
                return np.stack(batches)


def initial_weights(widths: list[int], seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per layer (W, b) of a chainrule MLP drawn with ``random.seed(seed)`` (micrograd's init)."""
    import random

    from chainrule import MLP

    random.seed(seed)
    model = MLP(widths[0], widths[1:], activation="relu", output_activation="linear")
    return [(np.array([[w.data for w in n.w] for n in layer.neurons]), np.array([n.b.data for n in layer.neurons]))
            for layer in model.layers]


def printable(text: str, limit: int = 200) -> str:
    """A child's error line, shown without control characters."""
    return "".join(c if c.isprintable() else "?" for c in text)[:limit]


def run_worker(kind: str, spec: dict, timeout: float, env: dict) -> dict | str:
    """Run one worker in a fresh process; its result, or a sentence saying why there is none."""
    try:
        done = subprocess.run([sys.executable, __file__, "--worker", kind, json.dumps(spec)], capture_output=True,
                              text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return f"did not finish in {timeout:g} s"
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()] or ["(no error output)"]
        return f"failed (exit {done.returncode}): {printable(lines[-1])}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_pair(kinds: tuple[str, str], spec: dict, timeout: float, env: dict) -> list:
    """Both libraries' workers, alternating, one fresh process per repetition each (chainrule,
    PyTorch, chainrule, ...): a machine that slows down or speeds up during the run then weighs
    on both columns alike. Each result merges its repetitions: medians of their first-step and
    step times, the largest peak RSS, the last run's accuracy and losses."""
    runs: list[list] = [[], []]
    for _ in range(spec["reps"]):
        for who, kind in enumerate(kinds):
            runs[who].append(run_worker(kind, dict(spec, reps=1), timeout, env))
    merged = []
    for results in runs:
        failed = [r for r in results if isinstance(r, str)]
        if failed:
            merged.append(failed[0])
            continue
        last = dict(results[-1])
        last["first_s"] = statistics.median(r["first_s"] for r in results)
        last["step_s"] = statistics.median(r["step_s"] for r in results)
        last["step_s_all"] = [r["step_s"] for r in results]
        last["rss_mib"] = max(r["rss_mib"] for r in results)
        merged.append(last)
    if all(isinstance(m, dict) for m in merged):
        # The ratio of each repetition's pair (run one after the other), then their median: a
        # drift in the machine's speed between repetitions cancels within each pair.
        merged[0]["ratio"] = statistics.median(a["step_s"] / b["step_s"] for a, b in zip(*runs))
    return merged


def fmt_time(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms" if seconds < 1 else f"{seconds:.2f} s"


def print_row(name: str, ours, theirs, extra: str) -> None:
    if isinstance(ours, str) or isinstance(theirs, str):
        print(f"{name:24s} chainrule: {ours if isinstance(ours, str) else 'ok'}; "
              f"PyTorch: {theirs if isinstance(theirs, str) else 'ok'}")
        for who, res in (("chainrule", ours), ("PyTorch", theirs)):
            if isinstance(res, dict):
                print(f"{'':24s} {who}: first step {fmt_time(res['first_s'])}, step {fmt_time(res['step_s'])}, "
                      f"peak RSS {res['rss_mib']:.0f} MiB")
        return
    ratio = ours.get("ratio", ours["step_s"] / theirs["step_s"])
    print(f"{name:24s}{fmt_time(ours['first_s']):>12s}{fmt_time(theirs['first_s']):>12s}"
          f"{fmt_time(ours['step_s']):>12s}{fmt_time(theirs['step_s']):>12s}{ratio:>8.2f}x"
          f"{ours['rss_mib']:>9.0f}{theirs['rss_mib']:>9.0f}  {extra}")


def write_task(tmp: str, widths: list[int], examples: int, batch: int, steps: int, reps: int, seed: int) -> dict:
    """The data, batch order and initial weights of one run, saved for the workers; their spec."""
    X, y = synthetic_task(examples, widths[0], seed)
    y = y % widths[-1]
    weights = initial_weights(widths, seed)
    arrays = Path(tmp) / ("task-" + "-".join(map(str, widths)) + f"-b{batch}.npz")
    np.savez(arrays, X=X, y=y, order=batch_order(len(X), batch, steps, seed),
             **{f"W{i}": W for i, (W, _) in enumerate(weights)}, **{f"b{i}": b for i, (_, b) in enumerate(weights)})
    return {"arrays": str(arrays), "widths": widths, "steps": steps, "reps": reps, "batch": batch, "seed": seed}


def sweep(args, env: dict) -> None:
    """Step time against hidden width, then against batch size, both libraries side by side."""
    steps = min(args.steps, 40)
    runs = [([64, w, 10], 128) for w in (64, 128, 256, 512, 1024)] + \
           [([64, 128, 10], b) for b in (8, 32, 128, 512, 1024)]
    print(f"sweep: {steps} steps per run, {args.reps} repetitions, median step after the first\n")
    print(f"{'model':24s}{'batch':>6s}{'chainrule':>12s}{'PyTorch':>12s}{'ratio':>8s}"
          f"{'ns per multiply-add':>26s}")
    print(f"{'':24s}{'':6s}{'':12s}{'':12s}{'':8s}{'chainrule':>13s}{'PyTorch':>13s}")
    with tempfile.TemporaryDirectory() as tmp:
        for widths, batch in runs:
            spec = write_task(tmp, widths, max(args.examples, 2 * batch), batch, steps, args.reps, args.seed)
            ours, theirs = run_pair(("chainrule", "torch"), spec, args.timeout, env)
            name = f"MLP({widths[0]}, {widths[1:]})"
            if isinstance(ours, str) or isinstance(theirs, str):
                print(f"{name:24s}{batch:>6d}  chainrule: {ours if isinstance(ours, str) else 'ok'}; "
                      f"PyTorch: {theirs if isinstance(theirs, str) else 'ok'}")
                continue
            macs = batch * sum(a * b for a, b in zip(widths, widths[1:]))
            print(f"{name:24s}{batch:>6d}{fmt_time(ours['step_s']):>12s}{fmt_time(theirs['step_s']):>12s}"
                  f"{ours.get('ratio', ours['step_s'] / theirs['step_s']):>7.2f}x{ours['step_s'] / macs * 1e9:>13.2f}"
                  f"{theirs['step_s'] / macs * 1e9:>13.2f}")
    print(f"\nload average now {os.getloadavg()[0]:.2f} (timings on a loaded machine are noisy)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=DEFAULT_SIZES, metavar="W,W,...",
                        help="MLP widths inputs,hidden...,classes (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=100, help="training steps per run (default: %(default)s)")
    parser.add_argument("--reps", type=int, default=3,
                        help="repetitions, each a fresh process per library, alternating; medians (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per process (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--examples", type=int, default=2048, help="training examples (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-demo", action="store_true", help="skip micrograd's demo row")
    parser.add_argument("--demo-only", action="store_true",
                        help="only micrograd's demo row (its ratio moves most from run to run: try --reps 7)")
    parser.add_argument("--sweep", action="store_true", help="hidden widths and batches 8 ... 1,024 instead")
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "SPEC"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        kind, spec = args.worker
        print(json.dumps(WORKERS[kind](json.loads(spec))))
        return
    if args.steps < 2 or args.reps < 1 or args.timeout <= 0 or args.batch < 1 or args.examples < 2:
        raise SystemExit("--steps must be >= 2, --reps >= 1, --timeout > 0, --batch >= 1, --examples >= 2")
    if args.demo_only and (args.no_demo or args.sweep):
        raise SystemExit("--demo-only runs the demo row alone: leave out --no-demo and --sweep")
    sizes = [parse_size(s) for s in args.sizes]
    env = dict(os.environ, **{name: "1" for name in THREAD_VARS})

    import torch
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; numpy {np.__version__}, "
          f"torch {torch.__version__}; one BLAS thread; float64")
    print(f"synthetic {CLASSES}-class task, {args.examples} examples; Adam lr {LR:g}, batch {args.batch}, "
          f"{args.steps} steps, {args.reps} repetitions (a fresh process each, libraries alternating), "
          f"timeout {args.timeout:g} s per process\n")
    print(f"{'':24s}{'first step':>24s}{'step (median)':>24s}{'ratio':>9s}{'peak RSS MiB':>18s}")
    print(f"{'model, batch ' + str(args.batch):24s}{'chainrule':>12s}{'PyTorch':>12s}{'chainrule':>12s}"
          f"{'PyTorch':>12s}{'':>9s}{'chainrule':>9s}{'PyTorch':>9s}  train accuracy; loss difference")

    if args.sweep:
        return sweep(args, env)
    with tempfile.TemporaryDirectory() as tmp:
        for widths in [] if args.demo_only else sizes:
            spec = write_task(tmp, widths, args.examples, args.batch, args.steps, args.reps, args.seed)
            ours, theirs = run_pair(("chainrule", "torch"), spec, args.timeout, env)
            extra = ""
            if isinstance(ours, dict) and isinstance(theirs, dict):
                gap = max(abs(a - b) for a, b in zip(ours["losses"], theirs["losses"]))
                extra = f"{ours['accuracy']:.3f} vs {theirs['accuracy']:.3f}; {gap:.1e}"
            print_row(f"MLP({widths[0]}, {widths[1:]})", ours, theirs, extra)

        if not args.no_demo:
            spec = {"seed": 1, "steps": 100, "reps": max(args.reps, 3)}
            ours, theirs = run_pair(("demo-chainrule", "demo-torch"), spec, args.timeout, env)
            extra = ""
            if isinstance(ours, dict) and isinstance(theirs, dict):
                extra = f"final loss {ours['final_loss']:.6f} vs {theirs['final_loss']:.6f}"
            print_row("micrograd demo, 100 pts", ours, theirs, extra)
    print(f"\nload average now {os.getloadavg()[0]:.2f} (timings on a loaded machine are noisy)")


if __name__ == "__main__":
    main()
