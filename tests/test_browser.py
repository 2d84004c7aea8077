"""The results page in a real browser: headless Chromium loads it and reports, from JavaScript, what it shows.

The page itself allows no scripts (Content-Security-Policy), so the test loads a copy without the policy and with
one added script that writes its findings into the DOM; ``--dump-dom`` prints that DOM. Skipped where no
Chromium is installed (``.ci/run`` installs Debian's ``chromium`` when apt-get is available).
"""

import html
import json
import re
import shutil
import subprocess

import pytest
from helpers import make_photo

from cbir.imageio import write_image

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage")
CHECK = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const sections = [...document.querySelectorAll("section.query")];
  const report = {
    images: images.length,
    loaded: images.filter((i) => i.complete && i.naturalWidth > 0).length,
    results: sections.map((s) => s.querySelectorAll("figure.result img").length),
    declared: sections.map((s) => Number(s.dataset.results)),
    bars: document.querySelectorAll(".bar span").length,
    width: document.documentElement.scrollWidth,
  };
  const out = document.createElement("pre");
  out.id = "check";
  out.textContent = JSON.stringify(report);
  document.body.appendChild(out);
});
</script>"""

pytestmark = pytest.mark.slow  # a real browser process


def find_browser():
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(f"no headless browser found (looked for {', '.join(BROWSERS)}); on Debian: apt-get install chromium")


def run_browser(browser, tmp_path, *args):
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    done = subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_every_thumbnail_loads_and_every_result_is_shown(cli, tmp_path):
    browser = find_browser()
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(7):
        write_image(folder / (f"p{i}.png" if i % 2 else f"p{i} ü.jpg"), make_photo(i, size=(90, 120)))
    db = tmp_path / "i.db"
    assert cli("index", folder, "--db", db, "--codebook-size", 16)[0] == 0
    page = tmp_path / "results.html"
    code, _, err = cli("query", folder / "p1.png", folder / "p2 ü.jpg", "--color", "navy:40", "--db", db,
                       "-n", 5, "--html", page, "--quiet")
    assert code == 0 and err == ""

    text = page.read_text(encoding="utf-8")
    text, policies = re.subn(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", text)
    assert policies == 1
    probe = tmp_path / "probe.html"
    probe.write_text(text.replace("</body>", CHECK + "</body>"), encoding="utf-8")
    dom = run_browser(browser, tmp_path, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    found = re.search(r'<pre id="check">(.*?)</pre>', dom, re.S)
    assert found, f"the check script did not run; dumped DOM starts: {dom[:500]!r}"
    report = json.loads(html.unescape(found.group(1)))
    assert report["images"] == 3 + 15
    assert report["loaded"] == report["images"], "some thumbnails did not load"
    assert report["results"] == [5, 5, 5] and report["declared"] == [5, 5, 5]
    assert report["bars"] > 18
