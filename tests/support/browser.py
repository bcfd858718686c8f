"""A real headless Chromium (Debian's package) driven by Selenium, for the web console's end-to-end tests.

The browser and its driver come from the system (``apt-get install -y chromium chromium-driver``); nothing
downloads one: the driver's path is given, so Selenium Manager is never asked. Without them the browser
tests are skipped, saying so.

Screenshots for the docs are written only when ``SPOTDET_SCREENSHOTS`` names a folder (relative paths
are taken from the repository root), so a normal run never rewrites ``docs/``.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import time
from pathlib import Path
from typing import Callable, TypeVar

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
APT_LINE = "apt-get install -y chromium chromium-driver"
SCREENSHOTS_ENV = "SPOTDET_SCREENSHOTS"
ROOT = Path(__file__).resolve().parents[2]
WINDOW = (1360, 900)

T = TypeVar("T")


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).exists() or shutil.which(Path(path).name)):
            return f"{path} is not installed (Debian: {APT_LINE})"
    return None


def start_chromium():
    """A new headless Chromium session (the caller quits it)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={WINDOW[0]},{WINDOW[1]}", "--hide-scrollbars", "--force-device-scale-factor=1",
                "--disable-extensions", "--no-first-run", "--lang=en-US"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    return driver


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium per test module; skipped (with the apt line) where it is not installed."""
    reason = browser_missing()
    if reason:
        pytest.skip(reason)
    driver = start_chromium()
    yield driver
    driver.quit()


def wait_for(condition: Callable[[], T], timeout: float = 30.0, what: str = "condition",
             on_timeout: Callable[[], str] | None = None) -> T:
    """Poll ``condition`` until it returns something truthy (returned); AssertionError after ``timeout``.

    ``on_timeout`` adds context to the failure (e.g. the page's error box or the browser console)."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # the page is still rendering: an element not there yet, a stale one
            last_error = exc
        time.sleep(0.1)
    detail = on_timeout() if on_timeout else ""
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}"
                         f"{f' (last error: {last_error!r})' if last_error else ''}{': ' + detail if detail else ''}")


def screenshot_dir() -> Path | None:
    folder = os.environ.get(SCREENSHOTS_ENV)
    if not folder:
        return None
    path = Path(folder)
    return path if path.is_absolute() else ROOT / path


def screenshot(driver, name: str) -> Path | None:
    """Save the whole page (not just the viewport) as ``<SPOTDET_SCREENSHOTS>/<name>.png`` when that variable
    is set, through Chromium's own capture (DevTools ``Page.captureScreenshot`` beyond the viewport)."""
    folder = screenshot_dir()
    if folder is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    driver.execute_script("window.scrollTo(0, 0)")
    width, height = driver.execute_script(
        "return [document.documentElement.clientWidth, document.documentElement.scrollHeight]")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
    path = folder / f"{name}.png"
    # 256 colours: the photos in the page keep their look, the file shrinks ~3x (these are committed docs).
    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path
