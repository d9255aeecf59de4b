"""The page of ``lrp-ref serve`` in a real browser: headless Chromium driven by Selenium.

Why Selenium and not the DevTools protocol directly: the standard library has
no WebSocket client, and Selenium's pointer actions produce real pointer
events (down, moves, up) through chromedriver, which is what the drawing pad
listens to.  Debian's ``chromium`` and ``chromium-driver`` are the same
version, so no driver is downloaded.

Missing pieces skip the test with a message naming the package to install;
``.ci/run`` installs them and sets ``LRP_REF_REQUIRE_BROWSER=1``, which turns
such a skip into a failure, so CI cannot skip it unnoticed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from nets import SERVE_MODELS, SERVE_SAMPLES
from numpy.testing import assert_allclose

from lrp_ref import catalog, explain, load
from lrp_ref.rules import LRP0

ROOT = Path(__file__).resolve().parent.parent
MODELS, SAMPLES = SERVE_MODELS, SERVE_SAMPLES  # the server fixture (conftest.py) serves these
TIMEOUT = 60  # seconds for any one wait (CI has 2 cores)


def _missing() -> str | None:
    """What is missing to run a browser, named as the package that provides it; None when all is there."""
    if importlib.util.find_spec("selenium") is None:
        return "the Python package selenium (pip install -e '.[test]')"
    if _chromium() is None:
        return "Chromium (Debian: apt-get install chromium chromium-driver)"
    if shutil.which("chromedriver") is None:
        return "chromedriver (Debian: apt-get install chromium-driver)"
    return None


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path is not None:
            return path
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = _missing()
    if missing is not None:
        message = f"no headless browser: install {missing}"
        if os.environ.get("LRP_REF_REQUIRE_BROWSER"):
            pytest.fail(f"{message} (LRP_REF_REQUIRE_BROWSER is set, as in CI)")
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _chromium()  # type: ignore[assignment]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000", "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for_update(driver: Any, after: int) -> dict[str, Any]:
    """Wait until the page has finished an update beyond ``after``; return its state (without the big fields)."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, TIMEOUT).until(lambda d: d.execute_script(
        "return window.lrpDemo && window.lrpDemo.updates > arguments[0] && !window.lrpDemo.error "
        "&& !window.lrpDemo.drawPending "
        "&& document.body.dataset.state === 'ready'", after))
    return driver.execute_script(
        "const s = window.lrpDemo; return {updates: s.updates, source: s.source, image: s.explainedImage, "
        "target: s.target, "
        "model: s.model, rule: s.rule, results: Object.fromEntries(Object.entries(s.results).map(([k, v]) => "
        "[k, {relevance: v.relevance, prediction: v.prediction, target: v.target}]))};")


def post(server: Any, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(server.url + "api/explain", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as response:
        return json.loads(response.read())


def full_page_screenshot(driver: Any, path: Path) -> None:
    """The whole page (the window made as tall as the page, up to 4000 px), then the window as before."""
    size = driver.get_window_size()
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(size["width"], min(int(height) + 140, 4000))
    driver.save_screenshot(str(path))
    driver.set_window_size(size["width"], size["height"])


def test_the_page_in_headless_chromium(server, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver = browser
    driver.get(server.url)
    state = wait_for_update(driver, 0)  # the first shipped digit is explained on load
    assert state["source"] == "sample 0"
    rules = [b.get_attribute("data-rule") for b in driver.find_elements(By.CSS_SELECTOR, "#heatmaps button.heatmap")]
    assert rules == [spec for _, spec in catalog.SEED_COMPARISON]  # the rules of compare-rules, in its order
    assert sorted(rules) == sorted(state["results"])

    # draw a stroke: real pointer events on the pad
    pad = driver.find_element(By.ID, "pad")
    ActionChains(driver).move_to_element_with_offset(pad, -40, -90).click_and_hold().move_by_offset(60, 0) \
        .move_by_offset(10, 30).move_by_offset(-30, 70).move_by_offset(-25, 60).release().perform()
    state = wait_for_update(driver, state["updates"])
    assert state["source"] == "drawing"
    image = np.array(state["image"], dtype=np.float64)
    assert image.shape == (28, 28) and image.max() > 100 and image.min() >= 0
    # MNIST preprocessing in the page: the longer side of the bounding box ~20 px, centre of mass in the middle
    rows, cols = np.nonzero(image)
    assert 19 <= max(np.ptp(rows), np.ptp(cols)) + 1 <= 22
    r, c = np.indices(image.shape)
    assert_allclose([(r * image).sum() / image.sum(), (c * image).sum() / image.sum()], [13.5, 13.5], atol=0.6)
    # the heatmaps drawn are the server's relevance for exactly that image, painted with the signs' colours
    for rule in rules:
        expected = post(server, {"model": "cnn", "image": state["image"], "rule": rule})["relevance"]
        assert_allclose(np.array(state["results"][rule]["relevance"]), np.array(expected), rtol=0, atol=0)
    colours = driver.execute_script("""
        const canvas = document.querySelector('#heatmaps button[data-rule="lrp0"] canvas');
        const R = window.lrpDemo.results['lrp0'].relevance;
        let hi = [0, 0], lo = [0, 0];
        R.forEach((row, i) => row.forEach((v, j) => { if (v > R[hi[0]][hi[1]]) hi = [i, j];
                                                      if (v < R[lo[0]][lo[1]]) lo = [i, j]; }));
        const px = (p) => Array.from(canvas.getContext('2d').getImageData(p[1], p[0], 1, 1).data);
        return {hi: px(hi), lo: px(lo), loValue: R[lo[0]][lo[1]], hiValue: R[hi[0]][hi[1]]};""")
    assert colours["hi"][0] > colours["hi"][2] + 80  # the most positive pixel is red
    if colours["loValue"] < -0.5 * colours["hiValue"]:
        assert colours["lo"][2] > colours["lo"][0] + 40  # a strongly negative pixel is blue

    # pick a shipped digit with the keyboard: the prediction shown is the label and lrp_ref's prediction
    with h5py.File(SAMPLES, "r") as f:
        raw, label = f["images"][13], int(f["labels"][13])
    button = driver.find_element(By.CSS_SELECTOR, '#samples button[data-index="13"]')
    button.send_keys(Keys.ENTER)
    state = wait_for_update(driver, state["updates"])
    model = load(MODELS["cnn"])
    x = raw.reshape(1, 1, 28, 28) * model.metadata["input_scale"] + model.metadata["input_offset"]
    local = int(explain(model, x, LRP0()).target[0])
    shown = driver.find_element(By.CSS_SELECTOR, "#scores button.predicted").get_attribute("data-class")
    assert int(shown) == label == local
    assert f"labelled {label}: {label} " in driver.find_element(By.ID, "status").text

    # press another class: it is explained instead
    other = (label + 1) % 10
    driver.find_element(By.CSS_SELECTOR, f'#scores button[data-class="{other}"]').click()
    state = wait_for_update(driver, state["updates"])
    assert all(v["target"] == other for v in state["results"].values())
    assert driver.find_element(By.CSS_SELECTOR, f'#scores button[data-class="{other}"]') \
        .get_attribute("aria-pressed") == "true"

    # press a layer: its channels appear (the CNN's first convolution has 16)
    driver.find_element(By.CSS_SELECTOR, '#layers button[data-layer="1"]').click()
    WebDriverWait(driver, TIMEOUT).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#layer-detail .channel")) == 16)
    assert driver.find_elements(By.CSS_SELECTOR, "#ledger .ledger-row:not(.head)")  # the ledger is drawn

    # explain a channel of that layer instead of a class (where lrp_ref.explain takes start_at)
    if driver.execute_script("return window.lrpDemo.canStart"):
        driver.find_element(By.CSS_SELECTOR, '#layer-detail button[data-channel="3"]').click()
        state = wait_for_update(driver, state["updates"])
        answer = post(server, {"model": "cnn", "image": state["image"], "rule": "lrp0", "start_at": 0, "channel": 3})
        assert_allclose(np.array(state["results"]["lrp0"]["relevance"]), np.array(answer["relevance"]), rtol=0, atol=0)
        assert all(v["target"] is None for v in state["results"].values())
        assert driver.find_element(By.ID, "start-banner").is_displayed()
        driver.find_element(By.ID, "start-clear").click()
        state = wait_for_update(driver, state["updates"])
        assert all(v["target"] == other for v in state["results"].values())  # the class explained before
        assert not driver.find_element(By.ID, "start-banner").is_displayed()
    full_page_screenshot(driver, tmp_path / "serve_cnn.png")

    # another model
    Select(driver.find_element(By.ID, "model")).select_by_value("resnet")
    state = wait_for_update(driver, state["updates"])
    assert state["model"] == "resnet"
    assert len(driver.find_elements(By.CSS_SELECTOR, "#layers button.layer")) > 20

    shot = tmp_path / "serve_resnet.png"
    full_page_screenshot(driver, shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshots: {tmp_path / 'serve_cnn.png'}, {shot}")
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
