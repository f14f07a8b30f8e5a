"""The browser of the browser tests: Debian's Chromium (dev/browser.sh), driven by playwright.
Screenshots go to test-artifacts/."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from .stack import REPO

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling out, and this machine's closed
# network refuses it; playwright adds --headless and a fresh --user-data-dir itself.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "test-artifacts"


@contextlib.contextmanager
def browser_page() -> Iterator[Any]:
    """A page of a fresh headless Chromium."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


def log_in(page: Any, url: str, user: str, password: str) -> None:
    """Through the hub's login form, as a user does."""
    page.goto(f"{url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", password)
    page.click("#login_submit")
    page.wait_for_url("**/hub/**")
