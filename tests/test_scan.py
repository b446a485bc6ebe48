"""`dfwatch scan`: whole files scored with the daemon's code, exit codes, JSON lines, the HTML report."""
from __future__ import annotations

import json
import shutil
import subprocess

import cv2
import pytest

from daemon.scan import EXIT_BAD_INPUT, EXIT_FAKE, EXIT_NO_FACE, EXIT_REAL, FileResult, exit_code
from helpers.daemon import DFWATCH, Subscriber, daemon_env, start, stop

SETTINGS = ["--set", "window.stride=2", "--set", "inference.max_frame_age_s=0"]


@pytest.fixture(scope="module")
def clip(footage, tmp_path_factory):
    """Five seconds of franck.mp4 (a real talking face), re-encoded."""
    path = tmp_path_factory.mktemp("scan") / "franck5s.mp4"
    cap = cv2.VideoCapture(str(footage / "franck.mp4"))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 24, (360, 288))
    for _ in range(120):
        writer.write(cap.read()[1])
    writer.release()
    cap.release()
    return path


def scan(*args, env=None):
    return subprocess.run(DFWATCH + ["scan", *args], capture_output=True, text=True, timeout=180, env=env)


def test_scan_scores_equal_the_daemons_verdicts_for_the_same_file(clip, dldfd_bundle, tmp_path):
    r = scan(str(clip), "--bundle", str(dldfd_bundle), "--json", "--set", "inference.threshold=1.0", *SETTINGS,
             env=daemon_env(tmp_path))
    assert r.returncode == EXIT_REAL, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert all(line["file"] == str(clip) for line in lines)
    windows, summary = lines[:-1], lines[-1]
    assert summary["type"] == "file" and summary["verdict"] == "real" and summary["windows"] == len(windows) >= 5

    runtime = tmp_path / "run"
    runtime.mkdir()
    log = tmp_path / "daemon.log"
    proc = start(["run", "--bundle", str(dldfd_bundle), "--stream", f"a={clip}", "--set", "capture.pace=false",
                  *SETTINGS], daemon_env(runtime), log)
    sub = Subscriber(f"ipc://{runtime}/verdicts")
    try:
        sub.wait_for(lambda s: len(s.of("a")) >= len(windows), 120, "the daemon's verdicts for the file", log)
    finally:
        sub.close()
        assert stop(proc) == 0
    served = {v.window: v for v in sub.of("a")}
    assert sorted(served) == [w["window"] for w in windows]
    for w in windows:
        v = served[w["window"]]
        assert v.label == w["label"] and (v.score is None) == (w["score"] is None)
        if v.score is not None:
            assert abs(v.score - w["score"]) < 1e-5


def test_threshold_zero_flags_the_file_and_the_report_shows_its_plot(clip, dldfd_bundle, tmp_path):
    report = tmp_path / "report"
    r = scan(str(clip), "--bundle", str(dldfd_bundle), "--json", "--report", str(report),
             "--set", "inference.threshold=0.0", *SETTINGS, env=daemon_env(tmp_path))
    assert r.returncode == EXIT_FAKE, r.stderr
    summary = json.loads(r.stdout.splitlines()[-1])
    assert summary["verdict"] == "fake" and summary["alerts"] >= 1
    page = report / "franck5s.mp4.html"
    assert page.is_file()
    browser = shutil.which("chromium")
    if browser is None:
        pytest.skip("needs Debian's chromium and chromium-driver (scripts/setup.sh installs them as root)")
    from selenium import webdriver
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1000,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(shutil.which("chromedriver")))
    try:
        driver.get(page.as_uri())
        assert "FAKE" in driver.find_element(By.TAG_NAME, "h1").text
        plot = driver.find_element(By.ID, "timeline")
        assert plot.size["width"] > 400 and plot.size["height"] > 100
        assert len(driver.find_elements(By.CSS_SELECTOR, "#timeline circle")) == summary["windows"]
        faces = driver.find_elements(By.CSS_SELECTOR, "figure img")
        assert faces and all(driver.execute_script("return arguments[0].naturalWidth", img) > 0 for img in faces)
        driver.save_screenshot(str(tmp_path / "report.png"))  # the artifact, for a person to look at
    finally:
        driver.quit()
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_a_broken_file_is_one_line_and_the_others_are_still_scanned(clip, dldfd_bundle, tmp_path):
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(clip.read_bytes()[: clip.stat().st_size // 3])  # its index (moov) is at the end
    r = scan(str(truncated), str(clip), "--bundle", str(dldfd_bundle), "--set", "inference.threshold=1.0", *SETTINGS,
             env=daemon_env(tmp_path, DFWATCH__LOGGING__FORMAT="console"))
    assert r.returncode == EXIT_BAD_INPUT
    errors = [line for line in r.stderr.splitlines() if line.startswith("dfwatch scan:")]
    assert errors == [f"dfwatch scan: cannot open video file {truncated}: is it a video OpenCV/FFmpeg can decode?"]
    assert f"{clip}: REAL (" in r.stdout  # scanned after the broken one


def test_exit_code_precedence():
    def result(label=None, error=None, alerts=0):
        r = FileResult("f", windows=[{"label": label, "score": None}] if label else [], alerts=alerts, error=error)
        return r
    real, fake, no_face, broken = result("real"), result("fake", alerts=1), result("no_face"), result(error="x")
    assert exit_code([real]) == EXIT_REAL
    assert exit_code([real, no_face]) == EXIT_NO_FACE
    assert exit_code([no_face, broken]) == EXIT_BAD_INPUT
    assert exit_code([broken, fake, no_face]) == EXIT_FAKE
