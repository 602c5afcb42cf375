"""The live page in a real headless Chromium: it loads offline, trains, steps, and walks backward node by node.

Every wait polls the page's state with a deadline (never a fixed sleep), so a loaded machine only
makes a test slower, not flaky. Screenshots go to each test's temporary folder.
"""

import random
import time

import pytest

from chainrule import MLP
from chainrule.data import make_moons, train_test_split
from chainrule.liveview import LiveServer, Trainer
from test_browser import MISSING, browser  # noqa: F401  (browser is a fixture)

pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")

DEADLINE_S = 60


class Live:
    """A live server and a page on it, with the page's console and requests recorded."""

    def __init__(self, browser, hidden=(8, 8), running=False, speed=30, loss="mse"):
        random.seed(7)
        X, y = make_moons(100, noise=0.1, seed=0)
        X, X_test, y, y_test = train_test_split(X, y, test_size=0.2, seed=0)
        model = MLP(2, list(hidden) + [1], activation="tanh", output_activation="linear")
        trainer = Trainer(model, X, y, X_test=X_test, y_test=y_test, loss=loss, lr=0.1, speed=speed,
                          running=running)
        self.server = LiveServer(trainer).start()
        self.page = browser.new_page(viewport={"width": 1280, "height": 800})
        self.errors, self.requests = [], []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(self.server.url)
        self.until("s.frame !== null && s.layout !== null && s.boxes.length > 0")

    def js(self, expression):
        # page.evaluate runs through the DevTools protocol, which the page's strict CSP allows.
        return self.page.evaluate(f"(() => {{ const s = window.chainruleLive; return ({expression}); }})()")

    def until(self, expression, timeout=DEADLINE_S):
        deadline = time.monotonic() + timeout
        while True:
            value = self.js(expression)
            if value:
                return value
            assert time.monotonic() < deadline, f"timed out waiting for {expression}"
            self.page.wait_for_timeout(40)

    def step(self):
        return int(self.page.inner_text("#step"))

    def box_texts(self):
        return self.js("s.boxes.map(b => b.slots.map(t => t.el.textContent).join('|'))")

    def close(self):
        self.page.close()
        self.server.close()


@pytest.fixture
def live(browser):
    opened = []

    def open_page(**kwargs):
        opened.append(Live(browser, **kwargs))
        return opened[-1]

    yield open_page
    for page in opened:
        page.close()


def test_page_loads_offline_with_no_console_errors(live, tmp_path):
    """The page, its script, style and drawing come from 127.0.0.1 only, and nothing logs an error."""
    page = live(running=True)
    page.until("s.frames > 5")
    origin = f"http://127.0.0.1:{page.server.port}/"
    assert page.requests and all(url.startswith((origin, "data:")) for url in page.requests), page.requests
    assert page.errors == []
    assert page.page.locator("#network circle").count() == 2 + 8 + 8 + 1
    assert page.page.locator("#graph g.node.live-box").count() == 2 + 8 + 8 + 1 + 1
    page.page.screenshot(path=str(tmp_path / "live.png"))
    assert (tmp_path / "live.png").stat().st_size > 20_000


def test_play_lowers_the_loss_and_pause_stops_updates(live, tmp_path):
    """Play trains (the loss falls); after pause, new frames (another point selected) keep the same step."""
    page = live()
    page.page.click("#one-step")
    page.until("s.frame.step === 1")
    first = page.js("s.frame.curves.loss[0]")
    page.page.click("#play")
    page.until(f"s.frame.running && s.frame.curves.loss[s.frame.curves.loss.length - 1] < {0.8 * first}")
    page.page.click("#play")                          # the same button now pauses
    page.until("!s.frame.running")
    assert page.page.inner_text("#status") == "paused" and page.page.inner_text("#play") == "play"
    paused_at, frames = page.step(), page.js("s.frames")
    page.js("fetch('/api/control', {method: 'POST', headers: {'X-Chainrule-Token': document.querySelector("
            "'meta[name=chainrule-token]').content, 'Content-Type': 'application/json'}, body: JSON.stringify("
            "{action: 'select', index: 5})})")
    page.until(f"s.frame.points.selected === 5 && s.frames > {frames}")
    assert page.step() == paused_at and page.js("s.frame.step") == paused_at
    page.page.screenshot(path=str(tmp_path / "paused.png"))
    assert page.errors == []


def test_one_step_advances_the_counter_by_one_and_changes_the_grads(live):
    """'one step' moves the step from n to n + 1 and the graph's gradients change with the new weights."""
    page = live()
    before_step, before = page.step(), page.box_texts()
    page.page.click("#one-step")
    page.until(f"s.frame.step === {before_step + 1}")
    page.until("s.boxes.length > 0")
    after = page.box_texts()
    assert page.step() == before_step + 1
    grads_before = [t for t in before if "grad" in t]
    assert after != before and [t for t in after if "grad" in t] != grads_before
    page.page.click("#one-step")
    page.until(f"s.frame.step === {before_step + 2}")


def test_clicking_a_connection_shows_its_weight_grad_and_last_update(live):
    """A click on a connection pins its weight, gradient and last update, as numbers of the current frame."""
    page = live()
    page.page.click("#one-step")
    page.until("s.frame.step === 1")
    line = page.page.locator("#network line.hit").nth(20)
    index = int(line.get_attribute("data-param"))
    line.dispatch_event("click")
    info = page.page.inner_text("#net-info")
    weight = page.js(f"s.frame.params.data[{index}].toFixed(4)")
    grad = page.js(f"s.frame.params.grad[{index}].toFixed(4)")
    assert f"weight {weight}" in info.replace("-0.0000", "0.0000") and f"grad {grad}" in info
    assert "last update" in info and "(from L" in info
    page.page.locator("#network circle").nth(3).dispatch_event("click")
    assert "activation" in page.page.inner_text("#net-info") and "bias" in page.page.inner_text("#net-info")


def _click_point(page, index):
    x, y = page.js(f"(() => {{ const f = s.frame, e = f.grid.extent, p = f.points.xy[{index}], "
                   "c = document.getElementById('boundary'); "
                   "return [(p[0] - e[0]) / (e[1] - e[0]) * c.width, (e[3] - p[1]) / (e[3] - e[2]) * c.height]; })()")
    page.page.locator("#boundary").click(position={"x": x, "y": y})


def test_selecting_another_point_changes_the_graphs_data(live):
    """Clicking a point selects it: the graph's input boxes then hold that point's coordinates."""
    page = live()
    x1_before = page.js("s.boxById['x0'].slots[0].el.textContent")
    _click_point(page, 17)
    page.until("s.frame.points.selected === 17")
    expected = page.js("'data ' + s.frame.points.xy[17][0].toFixed(4)")
    page.until(f"s.boxById['x0'].slots[0].el.textContent === {expected!r}")
    assert x1_before != expected
    assert "#17" in page.page.inner_text("#graph-title")


def test_adding_a_point_changes_the_count_and_the_boundary(live, tmp_path):
    """In add/remove mode a click on empty ground adds a point of the chosen class; a click on it removes it."""
    page = live()
    assert "80 train" in page.page.inner_text("#points-count")
    boundary = page.page.eval_on_selector("#boundary", "c => c.toDataURL()")
    page.page.check('input[name="tool"][value="edit"]')
    page.page.select_option("#add-class", "1")
    page.page.locator("#boundary").click(position={"x": 20, "y": 20})
    page.until("s.frame.points.xy.length === 101")
    assert "81 train" in page.page.inner_text("#points-count")
    assert page.js("s.frame.points.label[80]") == 1
    page.page.click("#one-step")
    page.until("s.frame.step === 1")
    assert page.page.eval_on_selector("#boundary", "c => c.toDataURL()") != boundary
    page.page.screenshot(path=str(tmp_path / "added.png"))
    page.page.locator("#boundary").click(position={"x": 20, "y": 20})
    page.until("s.frame.points.xy.length === 100")
    assert "80 train" in page.page.inner_text("#points-count")


def test_backward_step_by_step_highlights_nodes_in_reverse_topological_order(live, tmp_path):
    """Each 'next node' highlights the node before the last in topological order and fills in gradients."""
    page = live(hidden=(3,))
    n_nodes = page.js("s.frame.graph.data.length")
    start = page.step()
    page.page.click("#walk-start")
    page.until("s.walk !== null && document.querySelector('#graph .live-current') !== null")
    nonzero = "s.boxes.filter(b => /grad (?!0\\.0000$)/.test(b.slots[1].el.textContent)).length"
    seen, filled, captions = [], [], []
    for k in range(12):
        seen.append(int(page.page.get_attribute("#graph .live-current", "data-topo")))
        filled.append(page.js(nonzero))
        captions.append(page.page.inner_text("#caption"))
        assert ".grad" in captions[-1]
        assert page.page.inner_text("#walk-counter") == f"node {k + 1} of {n_nodes}"
        page.page.click("#walk-next")
    assert seen == list(range(n_nodes - 1, n_nodes - 13, -1))
    assert filled == sorted(filled) and filled[-1] > filled[0]
    assert captions[0].startswith("loss.grad") and sum("+=" in c for c in captions) >= 6
    page.page.screenshot(path=str(tmp_path / "walk.png"))
    page.page.click("#walk-finish")
    page.until(f"s.frame.step === {start + 1} && s.walk === null")
    assert page.page.locator("#graph .live-current").count() == 0


def test_a_bad_value_shows_a_message_and_training_goes_on(live):
    """A 10,000-neuron layer is refused with a message in the page; the network keeps training as it was."""
    page = live(running=True)
    page.page.fill("#hidden", "10000")
    page.page.press("#hidden", "Enter")
    page.until("document.getElementById('message').textContent.includes('1 to 32 neurons')")
    assert "error" in page.page.get_attribute("#message", "class")
    step = page.step()
    page.until(f"s.frame.step > {step + 3}")
    assert page.js("s.frame.hidden") == [8, 8] and page.js("s.frame.running")
    assert page.errors == [] or all("400" in e for e in page.errors)


def test_a_neuron_of_a_large_net_expands_to_its_scalar_nodes(live, tmp_path):
    """Per-neuron view: a click on a neuron's box draws its weights, products and sums node by node."""
    page = live()
    assert page.js("s.frame.graph.grouped && s.boxById['L1N2'] !== undefined")
    page.page.locator("#graph g#L1N2").dispatch_event("click")
    page.until("s.frame.graph.expanded !== null && s.layout.id === s.frame.graph.layout && s.boxById['v0'] !== undefined")
    labels = page.page.locator("#graph g.node text").all_text_contents()
    assert {"L1.N2.w0", "L1.N2.b", "L1.N2.sum", "L1.N2.out", "L0.N0.out"} <= {t.strip() for t in labels}
    assert "neuron L1.N2 node by node" in page.page.inner_text("#graph-title")
    page.page.screenshot(path=str(tmp_path / "expanded.png"))
    page.page.click("#collapse")
    page.until("s.frame.graph.expanded === null && s.layout.id === s.frame.graph.layout && s.boxById['L1N2'] !== undefined")
