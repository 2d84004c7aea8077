"""`cbir serve` as a user starts it: the URL on stdout, 127.0.0.1 only unless --host says otherwise, --port,
--open, and clear errors."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("uvicorn", reason="the web extra is not installed: pip install -e '.[web]'")
pytestmark = pytest.mark.slow
SAMPLE_DB = Path(__file__).resolve().parents[1] / "sample_index" / "index.db"


def start(*args, env=None):
    process = subprocess.Popen([sys.executable, "-m", "cbir", "serve", *map(str, args)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    return process, process.stdout.readline().strip()


def stop(process):
    process.terminate()
    process.wait(10)


@pytest.fixture
def db(tmp_path):
    copy = tmp_path / "index.db"
    copy.write_bytes(SAMPLE_DB.read_bytes())
    return copy


def test_serve_prints_its_url_and_listens_on_this_machine_only(db):
    process, url = start("--db", db)
    try:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")
        port = int(url.rsplit(":", 1)[1].strip("/"))
        with urllib.request.urlopen(url + "api/info") as response:
            assert b'"images":24' in response.read()
        listening = {line.split()[1] for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                     if line.split()[3] == "0A"}  # state LISTEN
        assert f"0100007F:{port:04X}" in listening and f"00000000:{port:04X}" not in listening
    finally:
        stop(process)


def test_a_given_port_and_a_busy_port(db):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process, url = start("--db", db, "--port", port)
    try:
        assert url == f"http://127.0.0.1:{port}/"
        second = subprocess.run([sys.executable, "-m", "cbir", "serve", "--db", str(db), "--port", str(port)],
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1 and second.stderr.startswith(f"Error: cannot listen on 127.0.0.1:{port}")
    finally:
        stop(process)


def test_open_starts_a_browser_on_the_url(db, tmp_path):
    seen = tmp_path / "opened"
    fake = tmp_path / "browser.py"
    fake.write_text(f"import sys; open({str(seen)!r}, 'w').write(sys.argv[1])\n")
    env = {**os.environ, "BROWSER": f"{sys.executable} {fake} %s"}
    process, url = start("--db", db, "--open", env=env)
    try:
        for _ in range(100):
            if seen.exists() and seen.read_text():
                break
            time.sleep(0.1)
        assert seen.read_text() == url
    finally:
        stop(process)


def test_no_index_is_a_clear_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "cbir", "serve", "--db", str(tmp_path / "none.db")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stderr.startswith("Error: no index database at")
    assert not (tmp_path / "none.db").exists()
