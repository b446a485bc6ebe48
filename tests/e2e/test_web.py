"""The dashboard in a real browser (Debian's Chromium through Selenium), fed by the real daemon."""
from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from helpers.browser import ARTIFACTS, NEEDS_CHROMIUM, chromium, wait
from helpers.daemon import DFWATCH, daemon_env, free_port, start, stop

pytestmark = NEEDS_CHROMIUM


@pytest.fixture
def browser():
    with chromium("--window-size=1300,1400") as driver:
        yield driver


def status_of(url: str, headers: dict | None = None) -> int:
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10).status
    except urllib.error.HTTPError as e:
        return e.code
    except urllib.error.URLError:  # not listening (yet)
        return 0


def test_dashboard_shows_streams_timelines_and_alerts_with_evidence(browser, dldfd_bundle, footage, tmp_path):
    port = free_port()
    runtime = tmp_path / "run"
    runtime.mkdir()
    log = tmp_path / "daemon.log"
    proc = start(["run", "--bundle", str(dldfd_bundle), "--stream", f"a={footage / 'franck.mp4'}",
                  "--set", "window.stride=2", "--set", "inference.threshold=0.0",  # every window fake: an alert
                  "--set", "web.enabled=true", "--set", f"web.bind=127.0.0.1:{port}"], daemon_env(runtime), log)
    url = f"http://127.0.0.1:{port}/"
    # meanwhile a calibration collects stream a's published window scores (a stream declared real)
    calibration = subprocess.Popen(DFWATCH + ["calibrate", str(dldfd_bundle), "--from-daemon", "--stream", "a",
                                              "--hours", "0.002", "--false-alerts-per-day", "1000000",
                                              "--out", str(tmp_path / "from-daemon.json")],
                                   env=daemon_env(runtime), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and status_of(url) != 200:  # the supervised web child is up
            time.sleep(0.5)
        browser.get(url)
        wait(browser, "return document.querySelector('#streams tr[data-stream=a]')", 90, "the stream's row")
        first = wait(browser, "const c = window.dfwatch.charts.a; return c && c.data[0].length", 60, "a point")
        wait(browser, f"return window.dfwatch.charts.a.data[0].length > {first}", 30, "the timeline to grow")
        assert browser.execute_script("return document.querySelector('#untrained').hidden") is False
        wait(browser, "return document.querySelector('#alerts li.open img')", 60, "an alert with its thumbnail")
        assert wait(browser, "const i = document.querySelector('#alerts li.open img'); "
                             "return i.complete && i.naturalWidth", 20, "the thumbnail to load") > 0
        assert wait(browser, "const v = document.querySelector('#alerts li.open video'); "
                             "return v && v.readyState >= 1 && v.duration", 30, "the clip to load") > 0
        row = browser.execute_script("return document.querySelector('#streams tr[data-stream=a]').innerText")
        assert "fake" in row and "running" in row
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))
        assert (ARTIFACTS / "dashboard.png").stat().st_size > 20_000
        for path in ("..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "a/..%2F..%2F..%2Fetc%2Fpasswd"):
            assert status_of(url + "evidence/" + path) in (403, 404)
        alert = browser.execute_script("return document.querySelector('#alerts li.open').dataset.alert")
        assert status_of(f"{url}evidence/a/{alert}/alert.json") == 200
        assert status_of(f"{url}evidence/%00") == status_of(f"{url}evidence/a/%01x") == 400
        assert not browser.find_elements("css selector", "button[data-review]")  # no token: the page only reads
        out, err = calibration.communicate(timeout=60)
        assert calibration.returncode == 0, err
        made = json.loads((tmp_path / "from-daemon.json").read_text())
        assert made["footage"] == ["daemon:a"] and made["windows"] >= 3 and "threshold" in out
    finally:
        if calibration.poll() is None:
            calibration.kill()
        assert stop(proc) == 0
    for line in log.read_text().splitlines():  # every process under run (web, evidence writer too) logs JSON
        assert json.loads(line)["role"] in ("run", "infer", "capture", "web"), line
        assert "Traceback" not in line and json.loads(line)["level"] != "error", line

    # the daemon and its dashboard are gone; a new dashboard reads the alert back from the evidence
    # store, shows it ended (the stop ended it), with its times' zone, and the stream as stopped; its
    # token allows reviews: a person marks the alert a false alarm, with a real click
    token_file = tmp_path / "token"
    token_file.write_text("alice correct-horse-battery-staple\nbob another-long-enough-token\n")  # a name per token
    token_file.chmod(0o600)
    web = start(["web", "--bind", f"127.0.0.1:{port}", "--endpoint", f"ipc://{runtime}/verdicts",
                 "--evidence", str(runtime / "evidence"), "--token-file", str(token_file), "--allow-reviews"],
                daemon_env(runtime), tmp_path / "web.log")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and status_of(url) != 401:
            time.sleep(0.3)
        browser.get(url + "?token=correct-horse-battery-staple")
        item = wait(browser, f"return document.querySelector('#alerts li.ended[data-alert=\"{alert}\"]')", 30,
                    "the stored alert")
        text = item.text
        assert " to " in text and "fake window(s)" in text, text
        assert re.search(r"\d:\d\d:\d\d (UTC|GMT|[A-Z]{3,5})([+-][\d:]+)?\b", text), text  # the time's zone
        assert item.find_element("css selector", "img") is not None  # its evidence, from the store
        row = wait(browser, "const r = document.querySelector('#streams tr[data-stream=a]'); return r && r.innerText",
                   20, "the stream's row")
        assert "stopped" in row, row
        item.find_element("css selector", "button[data-review=false_alarm]").click()
        wait(browser, f"return document.querySelector('li[data-alert=\"{alert}\"] .review-false_alarm')", 10,
             "the review in the list")
        stored = json.loads((runtime / "evidence" / "a" / alert / "review.json").read_text())
        assert stored["review"] == "false_alarm" and stored["alert_id"] == alert and stored["reviewer"] == "alice"
    finally:
        assert stop(web) == 0
    # what the reviewed false alarm says about the threshold: the daemon raised it at 0, which the
    # alert itself says (this command's own configuration has the bundle's 0.5)
    r = subprocess.run(DFWATCH + ["calibrate", str(dldfd_bundle), "--from-reviews", str(runtime / "evidence")],
                       capture_output=True, text=True, timeout=60, env=daemon_env(runtime))
    assert r.returncode == 0, r.stderr
    assert "1 false alarm(s), 0 confirmed; raised at threshold 0\n" in r.stdout and "reviewed by alice" in r.stdout
    assert "would have kept every reviewed false alarm" in r.stdout and "(from 0: higher)" in r.stdout


def test_a_token_guards_every_request_and_no_daemon_shows_a_banner(browser, tmp_path):
    port = free_port()
    token_file = tmp_path / "token"
    token_file.write_text("correct-horse-battery-staple\n")
    token_file.chmod(0o600)
    refused = subprocess.run(DFWATCH + ["web", "--bind", "0.0.0.0:9", "--endpoint", "ipc:///nonexistent"],
                             capture_output=True, text=True, timeout=30, env=daemon_env(tmp_path))
    assert refused.returncode == 2 and "beyond loopback it needs --allow-remote" in refused.stderr
    proc = start(["web", "--bind", f"127.0.0.1:{port}", "--token-file", str(token_file),
                  "--endpoint", f"ipc://{tmp_path}/nothing"], daemon_env(tmp_path), tmp_path / "web.log")
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and status_of(url) != 401:
            time.sleep(0.3)
        for path in ("", "api/state", "evidence/a/b/faces.jpg", "ui/app.js"):
            assert status_of(url + path) == 401
        assert status_of(url + "api/state", {"Authorization": "Bearer correct-horse-battery-staple"}) == 200
        browser.get(url + "?token=correct-horse-battery-staple")  # later requests carry the cookie
        wait(browser, "return !document.querySelector('#unreachable').hidden", 20, "the not-reachable banner")
        second = subprocess.run(DFWATCH + ["web", "--bind", f"127.0.0.1:{port}", "--endpoint", "ipc:///nothing"],
                                capture_output=True, text=True, timeout=30,
                                env=daemon_env(tmp_path, DFWATCH__LOGGING__FORMAT="console"))
        assert second.returncode == 2 and second.stderr.count("\n") == 1, second.stderr  # one line, no traceback
        assert f"cannot serve the dashboard on 127.0.0.1:{port}" in second.stderr and "serving" not in second.stderr
    finally:
        assert stop(proc) == 0
