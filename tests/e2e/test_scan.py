"""`dfwatch scan`: whole files scored with the daemon's code, exit codes, JSON lines, the HTML report."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess

import pytest

from daemon.clients.scan import (EXIT_BAD_INPUT, EXIT_FAKE, EXIT_NO_FACE, EXIT_NO_VERDICT, EXIT_REAL, MAX_SHEETS,
                                 FileResult, exit_code, verdict_text)
from engines import __version__
from engines.bundles.bundle import load_bundle
from helpers.clips import write_clip
from helpers.daemon import DFWATCH, daemon_env, serve_file

SETTINGS = ["--set", "window.stride=2", "--set", "inference.max_frame_age_s=0"]


@pytest.fixture(scope="module")
def clip(footage, tmp_path_factory):
    """Five seconds of franck.mp4 (a real talking face), re-encoded."""
    return write_clip(footage / "franck.mp4", tmp_path_factory.mktemp("scan") / "franck5s.mp4", 120)


@pytest.fixture(scope="module")
def cut_avi(footage, tmp_path_factory):
    """Half of a 24-frame MJPG AVI: FFmpeg decodes its first 12 frames, the header declares 24."""
    whole = write_clip(footage / "franck.mp4", tmp_path_factory.mktemp("cut") / "whole.avi", 24, "MJPG")
    cut = whole.with_name("cut.avi")
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return cut


def scan(*args, env=None):
    return subprocess.run(DFWATCH + ["scan", *args], capture_output=True, text=True, timeout=180, env=env)


def test_scan_scores_equal_the_daemons_verdicts_for_the_same_file(clip, dldfd_bundle, tmp_path):
    r = scan(str(clip), "--bundle", str(dldfd_bundle), "--json", "--set", "inference.threshold=1.0", *SETTINGS,
             "--allow-untrained", env=daemon_env(tmp_path))
    assert r.returncode == EXIT_REAL, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert all(line["file"] == str(clip) for line in lines)
    windows, summary = lines[:-1], lines[-1]
    assert summary["type"] == "file" and summary["verdict"] == "real" and summary["windows"] == len(windows) >= 5

    served = {v.window: v for v in serve_file(dldfd_bundle, clip, tmp_path, len(windows), tuple(SETTINGS))}
    assert sorted(served) == [w["window"] for w in windows]
    for w in windows:
        v = served[w["window"]]
        assert v.label == w["label"] and (v.score is None) == (w["score"] is None)
        if v.score is not None:
            assert abs(v.score - w["score"]) < 1e-5


def test_threshold_zero_flags_the_file_and_the_report_shows_its_plot(clip, dldfd_bundle, tmp_path):
    report = tmp_path / "report"
    r = scan(str(clip), "--bundle", str(dldfd_bundle), "--json", "--report", str(report),
             "--set", "inference.threshold=0.0", *SETTINGS, "--allow-untrained", env=daemon_env(tmp_path))
    assert r.returncode == EXIT_FAKE, r.stderr
    summary = json.loads(r.stdout.splitlines()[-1])
    assert summary["verdict"] == "fake" and summary["alerts"] >= 1
    page = report / "franck5s.mp4.html"
    assert page.is_file()
    data = json.loads((report / "franck5s.mp4.json").read_text())  # the JSON report beside the page
    assert data["video"]["sha256"] == hashlib.sha256(clip.read_bytes()).hexdigest()
    assert (data["video"]["width"], data["video"]["height"], data["video"]["frames"]) == (360, 288, 120)
    assert data["video"]["duration_s"] == 5.0 and data["video"]["codec"] == "FMP4"
    assert data["model"]["model"] == "test-dldfd" and data["model"]["untrained"] is True
    assert data["model"]["bundle_checksum"] == load_bundle(dldfd_bundle).checksum and data["scanned_at"]
    scores = sorted((w["score"] for w in data["windows"]), reverse=True)
    assert sorted(m["score"] for m in data["suspect_moments"]) == sorted(scores[:5])
    assert page.stat().st_size < 300_000  # the telling faces only, not a sheet per fake window
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
        assert len(driver.find_elements(By.CSS_SELECTOR, "#timeline line.tick")) == 5  # the y scale
        facts = driver.find_element(By.ID, "facts").text
        assert data["video"]["sha256"] in facts and "360×288" in facts and "UNTRAINED" in facts
        assert data["model"]["bundle_checksum"] in facts and "threshold 0" in facts
        assert len(driver.find_elements(By.CSS_SELECTOR, "#moments tr")) == 1 + 5
        faces = driver.find_elements(By.CSS_SELECTOR, "figure img")
        assert 0 < len(faces) <= MAX_SHEETS and all(driver.execute_script("return arguments[0].naturalWidth", img) > 0 for img in faces)
        driver.save_screenshot(str(tmp_path / "report.png"))  # the artifact, for a person to look at
    finally:
        driver.quit()
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_a_broken_file_is_one_line_and_the_others_are_still_scanned(clip, dldfd_bundle, tmp_path):
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(clip.read_bytes()[: clip.stat().st_size // 3])  # its index (moov) is at the end
    r = scan(str(truncated), str(clip), "--bundle", str(dldfd_bundle), "--set", "inference.threshold=0.0", *SETTINGS,
             env=daemon_env(tmp_path, DFWATCH__LOGGING__FORMAT="console"))
    assert r.returncode == EXIT_BAD_INPUT
    errors = [line for line in r.stderr.splitlines() if line.startswith("dfwatch scan:")]
    assert errors == [f"dfwatch scan: cannot open video file {truncated}: is it a video OpenCV/FFmpeg can decode?"]
    # scanned after the broken one; an untrained bundle gives no verdict (it would say FAKE at 0): issue 35.10
    assert f"{clip}: NO VERDICT: untrained model (" in r.stdout and "FAKE" not in r.stdout
    checksum = load_bundle(dldfd_bundle).checksum
    assert f"bundle test-dldfd (sha256 {checksum[:12]}), UNTRAINED: this verdict means nothing" in r.stdout


def test_a_folder_a_cut_file_and_an_unreadable_one(clip, cut_avi, dldfd_bundle, tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(clip, folder / "a.mp4")
    shutil.copy(cut_avi, folder / "sub" / "cut.avi")
    (folder / "notes.txt").write_text("not a video")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(clip.read_bytes()[:1000])
    (tmp_path / "empty").mkdir()
    r = scan(str(folder), str(broken), str(tmp_path / "empty"), "--bundle", str(dldfd_bundle), "--json",
             "--set", "inference.threshold=0.0", *SETTINGS, "--allow-untrained", env=daemon_env(tmp_path))
    assert r.returncode == EXIT_BAD_INPUT, r.stderr  # fakes and an unreadable file: the answer is incomplete
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    files = {line["file"]: line for line in lines if line["type"] == "file"}
    assert list(files) == [str(folder / "a.mp4"), str(folder / "sub" / "cut.avi"), str(broken),
                           str(tmp_path / "empty")]
    assert [f["verdict"] for f in files.values()] == ["fake", "fake", "error", "error"]
    for f in files.values():
        assert (f["model"], f["untrained"], f["threshold"], f["dfwatch"]) == ("test-dldfd", True, 0.0, __version__)
        assert f["bundle_checksum"] == load_bundle(dldfd_bundle).checksum
    cut = files[str(folder / "sub" / "cut.avi")]
    assert cut["warning"].startswith("the file ended early: 12 of the 24 frames")
    assert f"dfwatch scan: {folder / 'sub' / 'cut.avi'}: the file ended early" in r.stderr
    (window,) = [w for w in lines if w["type"] == "window" and w["file"] == cut["file"]]  # one short window
    assert window["frames"] < 8 and window["fake_frames"] <= window["frames"] and window["t_last"] <= 0.5


def test_usage_errors_exit_2_not_the_fake_code(clip, tmp_path):
    r = scan(str(clip), "--bundle", str(tmp_path / "typo"), env=daemon_env(tmp_path))
    assert r.returncode == EXIT_BAD_INPUT and "not a model bundle (no such directory)" in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    r = scan(str(clip), env=daemon_env(tmp_path))
    assert r.returncode == EXIT_BAD_INPUT and "no model bundle" in r.stderr


def test_exit_code_precedence():
    def result(label=None, error=None, alerts=0):
        r = FileResult("f", windows=[{"label": label, "score": None}] if label else [], alerts=alerts, error=error)
        return r
    real, fake, no_face, broken = result("real"), result("fake", alerts=1), result("no_face"), result(error="x")
    assert exit_code([real]) == EXIT_REAL
    assert exit_code([real, no_face]) == EXIT_NO_FACE
    assert exit_code([no_face, broken]) == EXIT_BAD_INPUT
    assert exit_code([fake, no_face]) == EXIT_FAKE
    assert exit_code([broken, fake, no_face]) == EXIT_BAD_INPUT  # incomplete: 2 wins over 1
    withheld = result("fake", alerts=1)
    withheld.withheld = "untrained model"   # scan without --allow-untrained, an untrained bundle
    assert withheld.verdict == "no_verdict" and verdict_text(withheld) == "NO VERDICT: untrained model"
    assert exit_code([real, withheld]) == EXIT_NO_VERDICT and exit_code([withheld, broken]) == EXIT_BAD_INPUT
