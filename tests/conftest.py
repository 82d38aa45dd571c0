"""Fixtures shared by the test files: the session's one headless Chromium.

Playwright's sync API allows one running instance per thread, so the browser is started once, here, for
every test file that drives it (tests/test_site.py, tests/test_browser_jupyterlab.py)."""
from __future__ import annotations

import pytest
from helpers import INSTALL_BROWSER, chromium_path, no_browser


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium (the system's) through Playwright, for the whole session."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        no_browser(INSTALL_BROWSER)
    path = chromium_path()
    if path is None:
        no_browser(INSTALL_BROWSER)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, headless=True, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()
