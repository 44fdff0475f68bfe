"""The HTML step-through (zpaxos/pictures/chart_html.py) in a real headless browser.

Debian's ``chromium`` and ``chromium-driver`` (installed by .ci/run) driven by selenium
(the ``test`` extra): the page is loaded from file://, stepped with the keyboard, the
buttons and the slider, and the panel is read at given steps. The browser tests are slow
tests (``tests/run.sh --slow``); without a browser they skip, saying why. The page's
self-containment is checked in every run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from zpaxos.pictures.logmodel import read_log
from zpaxos.pictures.steps import steps
from zpaxos.sim.lesson import break_rule, charts_of, draw_lesson

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """The lab's bug as a step-through page, and its steps as the page holds them."""
    d = tmp_path_factory.mktemp("html")
    lesson = break_rule("lab-ballots")
    files = draw_lesson(lesson, d / "lab.html", "html")
    html = files[-1]
    data = steps(read_log(files[0]), charts_of(files[0], delivered_only=True))
    return html, data, lesson


def test_page_is_self_contained(page):
    html, data, _ = page
    doc = html.read_text()
    assert "<script src" not in doc and "<link" not in doc and "@import" not in doc
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", doc)
    assert not re.search(r"url\(\s*['\"]?https?:", doc)
    # the data the script steps through is the page's own, and a text alternative is there
    found = re.search(r'<script type="application/json" id="steps-data">(.*?)</script>', doc,
                      re.S)
    assert found and json.loads(found.group(1)) == data
    assert "<summary>The chart as text</summary>" in doc and "TWO VALUES CHOSEN" in doc


def _skip(why: str) -> None:
    """Skip, saying why; where the browser must be there (.ci/run installed it), fail."""
    if os.environ.get("ZPAXOS_BROWSER_REQUIRED"):
        pytest.fail(f"browser required (ZPAXOS_BROWSER_REQUIRED) but: {why}")
    pytest.skip(why)


def _browser(home: Path):
    """Chromium with its profile, cache and HOME in ``home`` (the temp directory), so a run
    writes nothing into the user's own directories."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _skip("selenium is not installed (pip install -e '.[test]')")
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        _skip("no chromium/chromedriver (apt-get install chromium chromium-driver;"
              " .ci/run does)")
    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1440,900"):
        opts.add_argument(a)
    opts.add_argument(f"--user-data-dir={home / 'profile'}")
    opts.binary_location = binary
    own = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"),
           "XDG_CACHE_HOME": str(home / "cache")}
    try:
        return webdriver.Chrome(options=opts, service=Service(driver, env={**os.environ, **own}))
    except Exception as e:  # noqa: BLE001 -- any failure to start means: no browser here
        _skip(f"chromium would not start: {str(e).splitlines()[0]}")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = _browser(tmp_path_factory.mktemp("chromium"))
    yield b
    b.quit()


@pytest.mark.slow
def test_stepping_shows_each_nodes_state(browser, page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    html, data, lesson = page
    browser.get(html.as_uri())
    find = browser.find_element
    texts = [s["text"] for s in data["steps"]]
    n = len(texts) - 1
    assert find(By.ID, "step-count").text == f"Step 0 of {n}"
    assert find(By.CSS_SELECTOR, '#nodes tr[data-node="node1"] .accepted').text == "-"

    def cell(table: str, attr: str, who: str, col: str) -> str:
        return find(By.CSS_SELECTOR, f'#{table} tr[{attr}="{who}"] .{col}').text

    # The message that let the second value in: step to it with the arrow keys.
    s = lesson.split
    culprit = f"{s.culprit_ids[0]} → {s.culprit_ids[1]}: {s.culprit}"
    k = texts.index(culprit)
    body = find(By.TAG_NAME, "body")
    for _ in range(k):
        body.send_keys(Keys.ARROW_RIGHT)
    assert find(By.ID, "step-count").text == f"Step {k} of {n}"
    assert find(By.ID, "step-text").text == culprit
    node = f"node{s.node}"
    # node1 had accepted the first value at ballot 1.P; now the second one, same ballot.
    value = s.culprit.split()[-1]
    assert cell("nodes", "data-node", node, "accepted") == f"1.P = {value}"
    assert cell("nodes", "data-node", node, "promised") == "1.P"
    # The arrow of this step is the highlighted one, and later ones are faded.
    current = browser.find_elements(By.CSS_SELECTOR, "g.current g.arrow")
    assert [g.get_attribute("data-to") for g in current] == [node]
    assert browser.find_elements(By.CSS_SELECTOR, "g.future g.arrow")
    # One step back with the button, then to the end with the End key.
    find(By.ID, "prev").click()
    assert find(By.ID, "step-count").text == f"Step {k - 1} of {n}"
    body.send_keys(Keys.END)
    assert find(By.ID, "step-count").text == f"Step {n} of {n}"
    phases = {p: cell("proposers", "data-proposer", p, "phase")
              for p in ("proposer P1", "proposer P2")}
    assert sorted(phases.values()) == ["done: v1 chosen", "done: v2 chosen"]
    assert not browser.find_elements(By.CSS_SELECTOR, "g.future g.arrow")
    # The slider goes anywhere; Home back to the start.
    slider = find(By.ID, "slider")
    browser.execute_script("arguments[0].value = 3; arguments[0].dispatchEvent("
                           "new Event('input'))", slider)
    assert find(By.ID, "step-text").text == texts[3]
    body.send_keys(Keys.HOME)
    assert find(By.ID, "step-count").text == f"Step 0 of {n}"
    assert browser.get_log("browser") == [] if hasattr(browser, "get_log") else True


def test_the_chart_fits_its_panel(browser, page):
    """The whole chart is in view beside the panel, no part of it (the legend's end, the
    last node's box) cut off behind a scroll bar, in the window the README's screenshot
    is taken in (issue 26, item 10)."""
    html, _, _ = page
    browser.get(html.as_uri())
    fits = browser.execute_script(
        "const c = document.querySelector('.chart'), s = c.querySelector('svg');"
        "const r = s.getBoundingClientRect(), b = c.getBoundingClientRect();"
        "return [c.scrollWidth <= c.clientWidth, r.right <= b.right + 0.5, r.width];")
    assert fits[:2] == [True, True], fits


@pytest.mark.slow
def test_a_lesson_page_renders_to_an_image(browser, page, tmp_path):
    """A page renders to an image, as the README's screenshot does (docs/screenshot.py
    makes docs/lesson-lab-ballots.png)."""
    html, _, _ = page
    browser.get(html.as_uri())
    shot = tmp_path / "shot.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 20_000


@pytest.mark.slow
def test_a_real_runs_page_steps_too(browser, tmp_path):
    """zpaxos trace --format html on a real cluster's log (the fixed one of test_trace)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from zpaxos.cli import main

    out = tmp_path / "real.html"
    with pytest.raises(SystemExit) as e:
        main(["trace", str(ROOT / "tests" / "data" / "trace_fixed.jsonl"), "--out", str(out)])
    assert e.value.code == 0
    browser.get(out.as_uri())
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.END)
    phase = browser.find_elements(By.CSS_SELECTOR, "#proposers td.phase")
    assert [p.text for p in phase] == ["done: Value_B chosen", "done: Value_B chosen"]
    chosen = browser.find_elements(By.CSS_SELECTOR, "#nodes td.chosen")
    assert [c.text for c in chosen] == ["Value_B"] * 3
    body.send_keys(Keys.HOME)
    chosen = browser.find_elements(By.CSS_SELECTOR, "#nodes td.chosen")
    assert [c.text for c in chosen] == ["-"] * 3
