"""Headless Chromium (Debian's package, driven by Playwright) for tests that look at a page as a person would."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page


@dataclass(frozen=True)
class PageView:
    title: str
    text: str
    console_errors: list[str]
    broken_images: int
    images: int
    screenshot: Path


def chromium_path() -> str:
    """CI must run the browser tests (`make test` installs Chromium); elsewhere they skip without one."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is not installed: `make test` installs Debian's chromium package")
        pytest.skip("Chromium is not installed (`make test-tools` installs it)")
    return found


@contextlib.contextmanager
def browser_page(width: int = 1280, height: int = 900) -> Iterator[tuple[Page, list[str]]]:
    """A page in headless Chromium and the list its console errors, uncaught exceptions and failed requests
    are appended to."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []

    def request_failed(request) -> None:
        # A request the page cancelled itself (navigating away while the UI polls) is not a failure of the server.
        if request.failure != "net::ERR_ABORTED":
            errors.append(f"request failed: {request.url} {request.failure}")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path())
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
            page.on("requestfailed", request_failed)
            yield page, errors
        finally:
            browser.close()


def view(url: str, screenshot: Path, width: int = 1280, height: int = 900) -> PageView:
    """Load `url`, wait for the network to settle, take a full-page screenshot, and report what went wrong and
    images that did not decode."""
    with browser_page(width, height) as (page, errors):
        page.goto(url, wait_until="networkidle")
        images = page.evaluate("document.images.length")
        broken = page.evaluate("Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).length")
        page.screenshot(path=str(screenshot), full_page=True)
        return PageView(page.title(), page.inner_text("body"), list(errors), broken, images, screenshot)
