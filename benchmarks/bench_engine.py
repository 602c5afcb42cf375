"""chainrule vs micrograd on micrograd's own demo workload (a benchmark, not a test).

The workload is micrograd's ``demo.ipynb``: 100 two-moons points (noise 0.1), labels mapped to
+-1, ``MLP(2, [16, 16, 1])`` with ReLU hidden layers and a linear output, hinge loss
``mean(relu(1 - y*score)) + 1e-4 * sum(p*p)``, SGD with learning rate ``1.0 - 0.9*k/100``, full batch.
Both libraries run the *same* loop code from the same starting weights (copied parameter by
parameter; both order them per neuron ``w + [b]``), so their losses must agree to 1e-9.

Each library runs in its own fresh process, with Python's cycle collector on (as a learner has
it), in two conditions: a clean process, and one that has imported numpy, matplotlib and torch
first (a learner's notebook), which makes every full collection scan far more objects.

It prints: seconds per step for each (median over repetitions) and the ratio per condition, the
two losses after the same steps and their difference, peak traced memory of one step each, bytes
per node on a 1,000,000-node graph, and the time for a 1,000,000-deep chain's backward.

    python benchmarks/bench_engine.py            # about 2-3 minutes
    python benchmarks/bench_engine.py --quick    # under a minute, noisier
    python benchmarks/bench_engine.py --profile  # also cProfile one chainrule step
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import random
import statistics
import subprocess
import sys
import time
import tracemalloc
from typing import NamedTuple

import chainrule
from chainrule import MLP, Value

L2 = 1e-4


def load_moons(seed: int) -> tuple[list[list[float]], list[float], str]:
    """micrograd's data: 100 two-moons points, noise 0.1, labels mapped to +-1.

    chainrule's own loader is bit-identical to scikit-learn's and keeps scikit-learn's many
    objects out of the heap that Python's cycle collector scans (that heap is shared by both
    libraries here, so the comparison stays fair either way).
    """
    try:
        from chainrule.data import make_moons
        X, y = make_moons(100, noise=0.1, seed=seed)
        source = "chainrule.data.make_moons"
    except ImportError:
        try:
            from sklearn.datasets import make_moons
        except ImportError:
            raise SystemExit('this benchmark needs scikit-learn: pip install "chainrule[sklearn]"') from None
        X, y = make_moons(n_samples=100, noise=0.1, random_state=seed)
        source = "sklearn.datasets.make_moons"
    # Plain floats on both sides: a numpy scalar times a Value would go through numpy's object path.
    return X.tolist(), (y * 2 - 1).astype(float).tolist(), source


def demo_loss(value_cls, model, X, y):
    """micrograd's demo loss, written once and run on either library's Value and model."""
    inputs = [list(map(value_cls, row)) for row in X]
    scores = list(map(model, inputs))
    losses = [(1 + -yi * si).relu() for yi, si in zip(y, scores)]
    data_loss = sum(losses) * (1.0 / len(losses))
    reg_loss = L2 * sum(p * p for p in model.parameters())
    accuracy = sum((yi > 0) == (si.data > 0) for yi, si in zip(y, scores)) / len(y)
    return data_loss + reg_loss, accuracy


def sgd_step(value_cls, model, X, y, k: int):
    """One step of the demo: forward, zero grads, backward, update with lr = 1.0 - 0.9*k/100."""
    loss, accuracy = demo_loss(value_cls, model, X, y)
    model.zero_grad()
    loss.backward()
    lr = 1.0 - 0.9 * k / 100
    for p in model.parameters():
        p.data -= lr * p.grad
    return loss.data, accuracy


class Timing(NamedTuple):
    wall: float        # seconds per step, wall clock
    cpu: float         # seconds per step of this process's CPU time (steadier on a shared machine)
    loss: float        # the last step's loss
    accuracy: float


def train(value_cls, model, X, y, steps: int) -> Timing:
    """Run ``steps`` steps from k = 0 and time them."""
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    for k in range(steps):
        loss, accuracy = sgd_step(value_cls, model, X, y, k)
    return Timing((time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps, loss, accuracy)


class Workload:
    """Fresh chainrule and micrograd models that start from the same weights."""

    def __init__(self, seed: int):
        self.X, self.y, self.source = load_moons(seed)
        random.seed(seed)
        self.start = [p.data for p in self.chainrule_model(copy=False).parameters()]

    def chainrule_model(self, copy: bool = True):
        model = MLP(2, [16, 16, 1], activation="relu", output_activation="linear")
        if copy:
            for p, w in zip(model.parameters(), self.start, strict=True):
                p.data = w
        return model

    def micrograd_model(self):
        from micrograd.nn import MLP as MicroMLP
        model = MicroMLP(2, [16, 16, 1])
        for p, w in zip(model.parameters(), self.start, strict=True):
            p.data = w
        return model


def peak_memory_of_one_step(value_cls, model, X, y) -> int:
    gc.collect()
    tracemalloc.start()
    sgd_step(value_cls, model, X, y, 0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def bytes_per_node(value_cls, n: int) -> float:
    """Traced bytes per node of a chain ``x = x * w`` of ``n`` ops (each op makes one new node)."""
    gc.collect()
    tracemalloc.start()
    x, w = value_cls(1.0), value_cls(1.0)
    for _ in range(n):
        x = x * w
    used = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del x
    gc.collect()
    return used / n


def deep_chain(n: int) -> tuple[float, float, float]:
    """Seconds to build and to backprop a chain ``n`` ops deep, and the gradient it finds (n)."""
    x0, w = Value(1.0), Value(1.0)
    start = time.perf_counter()
    x = x0
    for _ in range(n):
        x = x * w
    built = time.perf_counter()
    x.backward()
    done = time.perf_counter()
    assert w.grad == n, f"deep chain gradient is {w.grad}, expected {n}"
    return built - start, done - built, w.grad


def micrograd_deep_chain(value_cls, n: int) -> str:
    """What micrograd's (recursive) backward does on a chain ``n`` ops deep."""
    x = value_cls(1.0)
    for _ in range(n):
        x = x * 1.0
    try:
        x.backward()
    except RecursionError as e:
        return f"RecursionError ({e})"
    return "ok"


CONDITIONS = {"clean": [], "notebook": ["numpy", "matplotlib.pyplot", "torch"]}


def worker(lib: str, condition: str, steps: int, reps: int, seed: int) -> dict:
    """Runs in a fresh process: import what the condition asks, then time ``steps`` steps ``reps`` times."""
    import importlib
    for name in CONDITIONS[condition]:
        importlib.import_module(name)
    work = Workload(seed)
    if lib == "micrograd":
        import micrograd.engine
        value_cls, make = micrograd.engine.Value, work.micrograd_model
    else:
        value_cls, make = Value, work.chainrule_model
    runs = [train(value_cls, make(), work.X, work.y, steps) for _ in range(reps)]
    return {"wall": [r.wall for r in runs], "cpu": [r.cpu for r in runs], "loss": runs[0].loss,
            "gc_enabled": gc.isenabled(), "tracked_objects": len(gc.get_objects())}


def in_fresh_process(lib: str, condition: str, steps: int, reps: int, seed: int) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", lib, "--condition", condition,
           "--steps", str(steps), "--reps", str(reps), "--seed", str(seed)]
    run = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise SystemExit(f"the {lib} worker failed:\n{run.stderr[-2000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="chainrule steps per repetition (default 20)")
    parser.add_argument("--micrograd-steps", type=int, default=5,
                        help="micrograd steps per repetition (default 5; about a second each)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each timing (default 3)")
    parser.add_argument("--nodes", type=int, default=1_000_000, help="graph size for bytes/node and deep chain")
    parser.add_argument("--seed", type=int, default=1337, help="data and weight seed (default 1337)")
    parser.add_argument("--quick", action="store_true", help="1 rep, 2 micrograd steps, 5 chainrule steps")
    parser.add_argument("--profile", action="store_true", help="cProfile one chainrule step and print the top")
    parser.add_argument("--worker", choices=["micrograd", "chainrule"], help=argparse.SUPPRESS)
    parser.add_argument("--condition", choices=sorted(CONDITIONS), default="clean", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.condition, args.steps, args.reps, args.seed)))
        return
    if args.quick:
        args.reps, args.micrograd_steps, args.steps = 1, 2, 5
    try:
        import micrograd.engine
    except ImportError:
        raise SystemExit("this benchmark needs micrograd: pip install micrograd==0.1.0") from None
    MicroValue = micrograd.engine.Value

    work = Workload(args.seed)
    X, y = work.X, work.y
    m = args.micrograd_steps
    print(f"workload: micrograd demo, 100 moons (noise 0.1, seed {args.seed}), MLP(2, [16, 16, 1]) relu/linear, "
          f"hinge + {L2:g} L2, SGD lr 1.0 - 0.9*k/100, chainrule {chainrule.__version__} vs micrograd 0.1.0, "
          f"data from {work.source}; each library in a fresh process, cycle collector on")

    print(f"\nseconds per step, median of {args.reps} reps (micrograd {m} steps per rep, chainrule {args.steps}):")
    print(f"  {'condition':10} {'micrograd':>10} {'chainrule':>10} {'ratio':>7}   "
          f"{'(cpu: micrograd, chainrule, ratio)':>36}   objects tracked")
    for condition in CONDITIONS:
        micro = in_fresh_process("micrograd", condition, m, args.reps, args.seed)
        chain = in_fresh_process("chainrule", condition, args.steps, args.reps, args.seed)
        mw, cw = statistics.median(micro["wall"]), statistics.median(chain["wall"])
        mc, cc = statistics.median(micro["cpu"]), statistics.median(chain["cpu"])
        print(f"  {condition:10} {mw:10.4f} {cw:10.4f} {mw / cw:6.1f}x   {mc:11.4f} {cc:10.4f} {mc / cc:6.1f}x"
              f"        {chain['tracked_objects']:,}")
    print("  (goal: chainrule >= 8x faster in both conditions)")

    # Same steps on both, from the same weights, in this process: the loss check.
    micro_run = train(MicroValue, work.micrograd_model(), X, y, m)
    chain_run = train(Value, work.chainrule_model(), X, y, m)
    diff = abs(micro_run.loss - chain_run.loss)
    print(f"\nloss after {m} steps: micrograd {micro_run.loss:.15f}, chainrule {chain_run.loss:.15f}, "
          f"|difference| {diff:.3e} ({'OK' if diff <= 1e-9 else 'MISMATCH'}: must be <= 1e-9)")

    micro_peak = peak_memory_of_one_step(MicroValue, work.micrograd_model(), X, y)
    chain_peak = peak_memory_of_one_step(Value, work.chainrule_model(), X, y)
    print(f"\npeak traced memory of one step: micrograd {micro_peak / 2**20:.1f} MiB, "
          f"chainrule {chain_peak / 2**20:.1f} MiB ({micro_peak / chain_peak:.1f}x less)")

    n = args.nodes
    print(f"bytes per node, chain of {n:,} ops: chainrule {bytes_per_node(Value, n):.1f} (goal: <= 120)")
    micro_n = min(n, 100_000)
    print(f"bytes per node, chain of {micro_n:,} ops: micrograd {bytes_per_node(MicroValue, micro_n):.1f}")
    build, backward, _ = deep_chain(n)
    print(f"chain {n:,} deep: chainrule build {build:.2f} s, backward {backward:.2f} s; "
          f"micrograd backward on a 10,000-deep chain: {micrograd_deep_chain(MicroValue, 10_000)}")

    if args.profile:
        model = work.chainrule_model()
        profiler = cProfile.Profile()
        profiler.runcall(sgd_step, Value, model, X, y, 0)
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
        print("\ncProfile of one chainrule step (by own time):")
        print(out.getvalue())


if __name__ == "__main__":
    main()
