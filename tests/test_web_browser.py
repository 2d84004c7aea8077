"""cbir serve in a real browser: `cbir serve` on a free port of 127.0.0.1, headless Chromium (Debian's package)
driven by Selenium through Debian's chromium-driver. It uploads the Kodak parrots and sees them first, runs a colour
query, paints a layout, clicks "more like this", and takes a screenshot of every page; no page may log an error
(a Content-Security-Policy violation would). Skipped, saying why, only where no browser or driver can be had
(.ci/run installs them from Debian's packages).

Screenshots go to a temporary folder, or to $CBIR_SCREENSHOTS (docs/web.md's pictures: CBIR_SCREENSHOTS=docs/img).
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from cbir.imageio import decode_image, encode_image

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1200")


def chromium():
    """A Selenium driver for the machine's Chromium, or a skip that says what is missing."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: pip install -e '.[test]'")
    from selenium.webdriver.chrome.service import Service

    browser = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip("no Chromium and chromium-driver here (on Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in FLAGS + (f"--user-data-dir={tempfile.mkdtemp(prefix='cbir-chromium-')}",):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver named explicitly: Selenium then never tries to download one.
    return webdriver.Chrome(service=Service(driver), options=options)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    shutil.copytree(REPO / "sample_index" / "images", folder / "images")
    shutil.copy(REPO / "sample_index" / "index.db", folder / "index.db")
    process = subprocess.Popen([sys.executable, "-m", "cbir", "serve", "--db", str(folder / "index.db")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), (url, process.stderr.read() if process.poll() else "")
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def browser():
    driver = chromium()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def screenshots():
    folder = Path(os.environ.get("CBIR_SCREENSHOTS") or tempfile.mkdtemp(prefix="cbir-screenshots-"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


VISIBLE_IMAGES = ("return [...document.images].filter(i => i.getBoundingClientRect().top < innerHeight)"
                  ".map(i => [i.src, i.complete, i.naturalWidth])")


def page(browser, screenshots, name):
    """Wait for the pictures in view (thumbnails are made on first view), screenshot the page as ``web-NAME.jpg``;
    fail on a picture that did not load and on anything the page logged at error level."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 30).until(lambda b: all(done for _, done, _ in b.execute_script(VISIBLE_IMAGES)))
    broken = [src for src, _, width in browser.execute_script(VISIBLE_IMAGES) if width == 0]
    assert not broken, broken
    shot = decode_image(browser.get_screenshot_as_png(), name=name)
    (screenshots / f"web-{name}.jpg").write_bytes(encode_image(shot, ".jpg"))  # a quarter of the PNG's size
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    return browser.find_element(By.TAG_NAME, "main")


def follow(browser, element):
    """Click a link or a submit button and wait for the next page to replace this one (a click returns before the
    browser has navigated, the more so on a busy machine)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    old = browser.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(browser, 60).until(expected_conditions.staleness_of(old))
    WebDriverWait(browser, 60).until(lambda b: b.execute_script("return document.readyState") == "complete")


def first_result(browser):
    from selenium.webdriver.common.by import By

    return browser.find_element(By.CSS_SELECTOR, ".result .name").get_attribute("title")


def test_upload_colour_layout_and_more_like_this_in_a_browser(server, browser, screenshots):
    from selenium.webdriver.common.by import By

    browser.get(server + "?folder=images")
    assert len(page(browser, screenshots, "collection").find_elements(By.CSS_SELECTOR, ".grid img")) == 24

    browser.get(server + "example")
    page(browser, screenshots, "example")
    browser.find_element(By.ID, "image").send_keys(str(REPO / "sample_index" / "images" / "kodim23.jpg"))
    follow(browser, browser.find_element(By.CSS_SELECTOR, "#upload button[type=submit]"))
    page(browser, screenshots, "results-upload")
    assert first_result(browser) == "images/kodim23.jpg"

    browser.get(server + "colour")
    page(browser, screenshots, "colour")
    follow(browser, browser.find_element(By.CSS_SELECTOR, "#colour-form button[type=submit]"))  # 40% #1e90ff, 20% white
    browser.find_element(By.CSS_SELECTOR, ".result details summary").click()
    main = page(browser, screenshots, "results-colour")
    assert "#1e90ff 40%" in browser.find_element(By.CSS_SELECTOR, ".query-title").text
    assert len(main.find_elements(By.CSS_SELECTOR, ".result")) == 24
    assert "of the distance" in main.find_element(By.CSS_SELECTOR, ".result details").text

    browser.get(server + "layout")
    picks = browser.find_elements(By.CSS_SELECTOR, ".palette .pick")
    cells = browser.find_elements(By.CSS_SELECTOR, ".cell")
    picks[0].click()
    for cell in cells[:3]:
        cell.click()
    picks[-1].click()
    for cell in cells[6:]:
        cell.click()
    painted = browser.find_element(By.ID, "layout").get_attribute("value").split(",")
    assert painted[:3] == [picks[0].get_attribute("data-hex")] * 3 and painted[3:6] == [""] * 3
    page(browser, screenshots, "layout")
    follow(browser, browser.find_element(By.CSS_SELECTOR, "#layout-form button[type=submit]"))
    page(browser, screenshots, "results-layout")

    browser.get(server + "?folder=images")
    follow(browser, browser.find_element(By.CSS_SELECTOR, ".grid img[alt='kodim23.jpg']"))
    page(browser, screenshots, "image")
    follow(browser, browser.find_element(By.ID, "more-like-this"))
    page(browser, screenshots, "results-like")
    assert "like images/kodim23.jpg" in browser.find_element(By.CSS_SELECTOR, ".query-title").text
    assert first_result(browser) != "images/kodim23.jpg"  # the example itself is not among its results

    cards = browser.find_elements(By.CSS_SELECTOR, ".result")
    liked, unliked = cards[0].get_attribute("data-id"), cards[1].get_attribute("data-id")
    cards[0].find_element(By.CSS_SELECTOR, "input[name=like]").click()
    cards[1].find_element(By.CSS_SELECTOR, "input[name=unlike]").click()
    follow(browser, browser.find_element(By.ID, "refine"))
    page(browser, screenshots, "results-feedback")
    assert "relevance feedback" in browser.find_element(By.CSS_SELECTOR, ".query").text
    shown = [c.get_attribute("data-id") for c in browser.find_elements(By.CSS_SELECTOR, ".result")]
    assert liked not in shown and unliked not in shown and len(shown) == 21  # 24 photos, 3 marked or the example

    browser.get(server + "image/999999")
    assert "no indexed image" in browser.find_element(By.ID, "error-message").text
    browser.get_log("browser")  # the 404 of that page is expected
