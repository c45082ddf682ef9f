"""Headless Chromium for the page tests: Debian's chromium driven by Playwright, with the page's errors collected."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from playwright.sync_api import ConsoleMessage, Dialog, Page, expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
# No network of its own: a test must never depend on (or wait for) Chromium's background services.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic", "--no-first-run"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class OpenPage:
    """A loaded page and what went wrong in it: console errors (text, url), uncaught exceptions and dialogs.

    ``dialogs`` holds the message of every ``alert``/``confirm``/``prompt`` the page opened (each dismissed).
    """

    page: Page
    errors: list[dict[str, str]] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


@contextmanager
def open_page(url: str, width: int, height: int, timeout_ms: int, *, ready: bool = True,
              offline: bool = False) -> Iterator[OpenPage]:
    """Open ``url`` in headless Chromium and wait until the page sets ``body[data-ready=true]``.

    Args:
        url: The page.
        width: Viewport width in pixels.
        height: Viewport height in pixels.
        timeout_ms: Default timeout of actions and ``expect`` (a busy machine renders slower than 5 s).
        ready: Wait for ``body[data-ready=true]`` (our pages set it); False for pages we do not write.
        offline: Abort every request to another origin than the page's (a CDN), as an offline installation.
    """
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            opened = OpenPage(page)

            def on_console(msg: ConsoleMessage) -> None:
                if msg.type == "error":
                    opened.errors.append({"text": msg.text, "url": msg.location.get("url", "")})

            page.set_default_timeout(timeout_ms)
            expect.set_options(timeout=timeout_ms)
            page.on("console", on_console)
            page.on("pageerror", lambda err: opened.page_errors.append(str(err)))

            def on_dialog(dialog: Dialog) -> None:
                opened.dialogs.append(dialog.message)
                dialog.dismiss()

            page.on("dialog", on_dialog)
            if offline:
                origin = "{0.scheme}://{0.netloc}/".format(urlsplit(url))
                page.route(lambda u: not u.startswith(origin), lambda route: route.abort())
            page.goto(url)
            if ready:
                expect(page.locator("body")).to_have_attribute("data-ready", "true")
            yield opened
        finally:
            browser.close()
