"""Debian's Chromium through Selenium: headless for pages, or on a virtual screen (Xvfb) for a
window another program reads (a screen: source)."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from contextlib import contextmanager

import pytest

from conftest import REPO

ARTIFACTS = REPO / ".cache" / "test-artifacts"   # screenshots a person can look at after a run
HAVE_CHROMIUM = shutil.which("chromium") is not None and shutil.which("chromedriver") is not None
NEEDS_CHROMIUM = pytest.mark.skipif(not HAVE_CHROMIUM, reason="needs Debian's chromium and chromium-driver "
                                                              "(scripts/setup.sh installs them as root)")


@contextmanager
def chromium(*flags: str, headless: bool = True, display: str | None = None):
    """A Chromium driven by Selenium; without `headless`, on X display `display`."""
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required",
                 *(("--headless=new",) if headless else ()), *flags):
        options.add_argument(flag)
    old = os.environ.get("DISPLAY")
    if display is not None:
        os.environ["DISPLAY"] = display  # chromedriver starts Chromium with this process's environment
    try:
        driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(shutil.which("chromedriver")))
    finally:
        if display is not None:
            os.environ.pop("DISPLAY") if old is None else os.environ.__setitem__("DISPLAY", old)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver, script: str, timeout: float, what: str):
    """`helpers.waiting.wait` for a script's value in the page."""
    from helpers.waiting import wait as wait_for

    return wait_for(lambda: driver.execute_script(script), timeout, what, every=0.5)


@contextmanager
def virtual_screen(width: int, height: int):
    """Xvfb on a free display number; yields the DISPLAY value."""
    if shutil.which("Xvfb") is None:
        pytest.fail("Xvfb is not installed: run scripts/setup.sh as root (Debian package xvfb)")
    number = next(n for n in range(90, 200) if not os.path.exists(f"/tmp/.X11-unix/X{n}")
                  and not os.path.exists(f"/tmp/.X{n}-lock"))
    proc = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(f"/tmp/.X11-unix/X{number}"):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise AssertionError("Xvfb did not start")
            time.sleep(0.1)
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
