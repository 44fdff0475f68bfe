"""Remake docs/lesson-lab-ballots.png, the picture of the step-through page in
docs/learning-by-breaking.md.

Run from the repository root (needs chromium, chromedriver and selenium, as
tests/test_html_browser.py does):

    python docs/screenshot.py

It draws ``zpaxos sim --break lab-ballots --out docs/lesson-lab-ballots.html`` (so the
page names its log as docs/lesson-lab-ballots.log, a path anyone can make, not a
temporary file), steps the page to the message that let the second value in, takes the
screenshot, and removes the page and its log again.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

STEP = 11  # P1's Accept reaches node1, which overwrites v2 with v1 at the same ballot
WINDOW = (1600, 1257)


def main() -> None:
    page, log = Path("docs/lesson-lab-ballots.html"), Path("docs/lesson-lab-ballots.log")
    subprocess.run([sys.executable, "-c", "from zpaxos.cli import main; main()", "sim",
                    "--break", "lab-ballots", "--out", str(page)], check=True)
    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
              f"--window-size={WINDOW[0]},{WINDOW[1]}"):
        opts.add_argument(a)
    opts.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or ""
    browser = webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))
    try:
        browser.get(page.resolve().as_uri())
        body = browser.find_element(By.TAG_NAME, "body")
        body.send_keys(Keys.HOME)
        for _ in range(STEP):
            body.send_keys(Keys.ARROW_RIGHT)
        count = browser.find_element(By.ID, "step-count").text
        assert count.startswith(f"Step {STEP} of"), count
        browser.execute_script("window.scrollTo(0, 0)")
        browser.save_screenshot("docs/lesson-lab-ballots.png")
    finally:
        browser.quit()
        page.unlink()
        log.unlink()
    print("wrote docs/lesson-lab-ballots.png")


if __name__ == "__main__":
    main()
