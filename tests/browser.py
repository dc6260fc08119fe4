"""Starting headless Chromium through Selenium, shared by the browser tests and
docs/screenshots.py. Needs Debian's `chromium` and `chromium-driver`."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
MISSING = (
    "headless Chromium not found: install Debian's chromium and chromium-driver "
    "(apt-get install chromium chromium-driver), as .ci/run does"
)
# Chromium's own background connections fail on a closed network and log errors; keep them off.
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1300,900",
]


def start_chromium(profile: Path):
    """A Selenium driver for headless Chromium that keeps the console log."""
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(
        service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options
    )


def wait_for(condition, seconds: float = 20.0):
    """Poll condition until it returns something true; fail after seconds."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("the page did not get there in time")
