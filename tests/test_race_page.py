"""The race page in a real headless Chromium (Debian's chromium + chromium-driver, driven by selenium).

A shareable link starts the race on load; both lanes fill with text, and the lane of Groq's API (the LPU system as
its clients saw it) shows its first token and finishes before the hosted GPU API's lane.
"""

import shutil
import time
import urllib.parse

import pytest

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is a test dependency (pip install -e '.[dev]')")
pytest.importorskip("fastapi", reason="lpu serve needs the serve extra (pip install -e '.[serve]')")

from lpu.serve import background  # noqa: E402
from lpu.serve.race import stream_chat  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")  # Debian: /usr/bin/chromium, /usr/bin/chromedriver
CHROMEDRIVER = shutil.which("chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
LPU, HOSTED = "llama2-70b@lpu-v1x576-api", "llama2-70b@hosted-api"

pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="no browser: install Debian's chromium and chromium-driver (.ci/run does)")


@pytest.fixture
def browser(tmp_path):
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in FLAGS + [f"--user-data-dir={tmp_path / 'profile'}"]:
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def test_a_shared_link_races_and_the_lpu_lane_leads(browser):
    with background(warm=False) as url:
        stream_chat(url, LPU, "Who is there?", 24)  # the LPU's schedule for this request shape is computed once (~0.5-2 s), before the race
        query = urllib.parse.urlencode(dict(prompt="Who is there?", models=f"{LPU},{HOSTED}", max_tokens=24, autostart=1))
        browser.get(f"{url}/?{query}")
        lanes = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            lanes = {el.get_attribute("data-model"): el for el in browser.find_elements("css selector", "section.lane")}
            states = [el.get_attribute("data-state") for el in lanes.values()]
            if len(lanes) == 2 and all(s in ("done", "error") for s in states):
                break
            time.sleep(0.1)
        assert set(lanes) == {LPU, HOSTED}
        got = {m: dict(state=el.get_attribute("data-state"), tokens=int(el.get_attribute("data-tokens")), text=el.find_element("css selector", "pre").text,
                       first_ms=float(el.get_attribute("data-first-ms")), done_ms=float(el.get_attribute("data-done-ms"))) for m, el in lanes.items()}
        for m, g in got.items():
            assert g["state"] == "done" and g["tokens"] == 24 and g["text"].strip(), (m, g)
        # like for like: ~0.37 s to the first token and ~0.1 s for 24 tokens at ~241 tok/s, against 0.55 s and 0.6 s at 40 tok/s
        assert got[LPU]["first_ms"] < got[HOSTED]["first_ms"] and got[LPU]["done_ms"] < got[HOSTED]["done_ms"], got
        speed = browser.find_element("css selector", f"section.lane[data-model='{HOSTED}'] .speed b").text
        assert 30 <= float(speed) <= 50  # the live counter: the hosted profile's 40 tok/s
        assert "first" in lanes[LPU].get_attribute("class")  # marked as the winner
