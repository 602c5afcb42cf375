"""How live ``chainrule live`` is: page updates per second, and what one frame and one step cost.

Each network size runs in a fresh process (so no size inherits another's recordings or warm caches):
100 two-moons points, tanh hidden layers, hinge loss, full batch, speed 1000 steps/s asked for, the
page open in headless Chromium at 1280x800 (when playwright and /usr/bin/chromium are there). It
reports medians of one-second windows: frames the trainer published, frames the page drew, training
steps; then the median cost of publishing one frame (the boundary grid by ``Compiled.batch``, the
point's graph built and backpropagated eagerly, the JSON) and of one compiled training step.

    python benchmarks/bench_live.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SIZES = [[8, 8], [16, 16], [32, 32]]
WINDOWS = 5

_CHILD = r"""
import json, random, statistics, sys, time
from chainrule import MLP
from chainrule.data import make_moons
from chainrule.liveview import LiveServer
from chainrule.liveview.frames import FPS
from chainrule.liveview.state import Trainer

hidden, windows = json.loads(sys.argv[1]), int(sys.argv[2])
random.seed(0)
X, y = make_moons(100, noise=0.1, seed=0)
trainer = Trainer(MLP(2, hidden + [1], activation="tanh", output_activation="linear"), X, y,
                  loss="hinge", lr=0.05, speed=1000, running=True)
server = LiveServer(trainer).start()
page = None
try:
    from playwright.sync_api import sync_playwright
    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                         args=["--headless", "--no-sandbox", "--disable-gpu"])
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(server.url)
except Exception:
    page = None
drawn = (lambda: page.evaluate("window.chainruleLive.frames")) if page else (lambda: 0)
frame = trainer.wait_frame(0, 120, step=20)
if page:
    deadline = time.monotonic() + 120
    while not page.evaluate("window.chainruleLive.layout !== null") and time.monotonic() < deadline:
        page.wait_for_timeout(50)
rates, pages, steps = [], [], []
for _ in range(windows):
    v0, s0, d0, t0 = frame["v"], frame["step"], drawn(), time.monotonic()
    time.sleep(1.0)
    frame = trainer.wait_frame(0, 5)
    d1, dt = drawn(), time.monotonic() - t0
    rates.append((frame["v"] - v0) / dt)
    pages.append((d1 - d0) / dt)
    steps.append((frame["step"] - s0) / dt)
if page:
    browser.close()
    playwright.stop()
server.close()
publish, step = [], []
for _ in range(30):
    t = time.perf_counter(); trainer._publish(); publish.append(time.perf_counter() - t)
    t = time.perf_counter(); trainer._train_step(); step.append(time.perf_counter() - t)
print(json.dumps({"fps": statistics.median(rates), "page_fps": statistics.median(pages) if page else None,
                  "steps_per_s": statistics.median(steps), "cap": FPS,
                  "publish_ms": 1000 * statistics.median(publish), "step_ms": 1000 * statistics.median(step),
                  "frame_kb": len(trainer.frame_json(0, 0)) / 1024, "params": len(trainer.params)}))
"""


def main() -> None:
    src = Path(__file__).resolve().parent.parent / "src"
    print(f"{'network':<18} {'params':>6} {'frames/s':>9} {'page/s':>7} {'steps/s':>8} {'publish ms':>11} "
          f"{'step ms':>8} {'frame kB':>9}")
    for hidden in SIZES:
        done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(hidden), str(WINDOWS)], capture_output=True,
                              text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(src)})
        if done.returncode != 0:
            print(f"MLP(2, {hidden + [1]}): failed: {done.stderr.strip().splitlines()[-1]}")
            continue
        r = json.loads(done.stdout)
        name = f"MLP(2, {hidden + [1]})"
        shown = "-" if r["page_fps"] is None else f"{r['page_fps']:.1f}"
        print(f"{name:<18} {r['params']:>6} {r['fps']:>9.1f} {shown:>7} {r['steps_per_s']:>8.0f} {r['publish_ms']:>11.2f} "
              f"{r['step_ms']:>8.3f} {r['frame_kb']:>9.1f}")
    print(f"(the trainer publishes at most chainrule.liveview.frames.FPS frames a second; medians of {WINDOWS} "
          "one-second windows; page/s: frames the page in headless Chromium drew)")


if __name__ == "__main__":
    main()
