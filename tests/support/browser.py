"""Headless Chromium driven by Selenium: Debian's `chromium` and its `chromedriver`
(scripts/install-browser.sh), given to Selenium by path so that nothing is downloaded."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

T = TypeVar("T")
CHROMIUM = os.environ.get("LOCALMODEL_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("LOCALMODEL_CHROMEDRIVER", "/usr/bin/chromedriver")


@contextlib.contextmanager
def chromium(downloads: Path) -> Iterator[webdriver.Chrome]:
    """A headless Chromium (1280×900) that fails the test with the install hint when it is missing."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(path):
            pytest.fail(f"{path} is missing: run scripts/install-browser.sh (make browser)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in a container: Chromium's sandbox needs user namespaces
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-extensions",
        f"--user-data-dir={downloads / 'profile'}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER, log_output=str(downloads / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver: webdriver.Chrome, check: Callable[[webdriver.Chrome], T], what: str, bound: float = 60) -> T:
    """Wait (bounded) until `check` returns something truthy; fail naming `what` with the page's text."""
    try:
        return WebDriverWait(driver, bound, poll_frequency=0.1).until(check)
    except Exception:
        body = driver.find_element(By.TAG_NAME, "body").text
        pytest.fail(f"timed out waiting for {what}; the page said:\n{body}")


def text_of(driver: webdriver.Chrome, css: str) -> str:
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0].text if found else ""


def element(driver: webdriver.Chrome, css: str) -> WebElement:
    return driver.find_element(By.CSS_SELECTOR, css)


def csp_violations(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """Console messages about a Content-Security-Policy violation (an inline script, a foreign asset)."""
    return [m for m in driver.get_log("browser") if "Content Security Policy" in str(m.get("message"))]
