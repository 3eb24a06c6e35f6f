"""Open a page the workbook wrote (the run report, a slide deck) in a real headless Chromium and say what a reader sees.

Used by the tests (``report.html`` and the slide decks) and to refresh the screenshot in ``docs/``:

    python -m workbook.browser runs/casestudy-full/report.html --screenshot docs/report.png --height 2400

Chromium is Debian's package (``/usr/bin/chromium``, which ``make test`` installs where it can); Playwright drives
it (the ``dev`` extra). :func:`find_chromium` returns ``None`` where there is no browser, so a caller can skip with
a clear message instead of failing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

#: Chromium's flags for a closed network: no sandbox (root in containers), no calls home at start.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip

# Every <img>: its source kind, whether it decoded, and how far it reaches past the page's right edge.
_IMAGES_JS = """() => [...document.images].map(img => {
  const box = img.getBoundingClientRect();
  return {alt: img.alt, src: img.src.slice(0, 30), loaded: img.complete && img.naturalWidth > 0,
          width: img.naturalWidth, right: box.right + window.scrollX};
})"""
# Elements (tables, figures, code) whose content is wider than the page and is not inside a scrolling box.
_OVERFLOW_JS = """() => {
  const page = document.documentElement.clientWidth, cut = [];
  for (const el of document.querySelectorAll('body *')) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.right <= page + 1) continue;
    let scrolls = false;
    for (let p = el.parentElement; p; p = p.parentElement) {
      const s = getComputedStyle(p).overflowX;
      if ((s === 'auto' || s === 'scroll') && p.scrollWidth > p.clientWidth) { scrolls = true; break; }
    }
    if (!scrolls) cut.push(el.tagName.toLowerCase() + ' ' + Math.round(box.right - page) + ' px');
  }
  return cut;
}"""


@dataclass
class PageReport:
    """What a reader of a page sees: its images, what is cut off, and what went wrong while it loaded."""

    title: str
    images: list[dict] = field(default_factory=list)
    cut_off: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    page_height: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def broken_images(self) -> list[dict]:
        """Images that did not decode (missing file, bad data URI)."""
        return [i for i in self.images if not i["loaded"]]

    @property
    def ok(self) -> bool:
        """Every image loaded, nothing is wider than the page, no console error, no failed request."""
        return not (self.broken_images or self.cut_off or self.console_errors or self.failed_requests)

    def summary(self) -> str:
        """One line: the page's title, its images, and each kind of problem found."""
        return (f"{self.title!r}: {len(self.images)} images ({len(self.broken_images)} broken), "
                f"{len(self.cut_off)} cut off, {len(self.console_errors)} console errors, "
                f"{len(self.failed_requests)} failed requests, {self.page_height} px tall")  # fmt: skip


def find_chromium() -> str | None:
    """Path of a Chromium binary (``$WORKBOOK_CHROMIUM``, Debian's ``chromium``, or ``chromium-browser``), or None."""
    for candidate in (os.environ.get("WORKBOOK_CHROMIUM"), "chromium", "chromium-browser"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


def open_page(
    path: Path,
    *,
    screenshot: Path | None = None,
    width: int = 1280,
    height: int = 900,
    evaluate: str | None = None,
    chromium: str | None = None,
    screenshot_height: int | None = None,
) -> PageReport:
    """Load a local HTML file in headless Chromium and report its images, overflow and load errors.

    Args:
        path: the HTML file (opened as a ``file://`` URL, as a reader double-clicking it would).
        screenshot: where to save a full-page PNG (``None``: no screenshot).
        width, height: the viewport (a laptop screen by default).
        evaluate: a JavaScript function expression run after load; its JSON result lands in ``extra["evaluate"]``.
        chromium: the browser binary (default :func:`find_chromium`).
        screenshot_height: keep only the page's top this many pixels in the screenshot (default: the whole page).

    Returns:
        The :class:`PageReport`.

    Raises:
        FileNotFoundError: no page at ``path``, or no Chromium on this machine.
    """
    from playwright.sync_api import sync_playwright  # the dev extra; imported here so the package never needs it

    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such page")
    binary = chromium or find_chromium()
    if binary is None:
        raise FileNotFoundError("no Chromium found: install Debian's `chromium` package or set WORKBOOK_CHROMIUM")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=binary, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            report = PageReport(title="")
            page.on("console", lambda m: m.type == "error" and report.console_errors.append(m.text))
            page.on("pageerror", lambda e: report.console_errors.append(str(e)))
            page.on("requestfailed", lambda r: report.failed_requests.append(f"{r.url[:80]} ({r.failure})"))
            page.goto(path.as_uri(), wait_until="load")
            if evaluate:
                report.extra["evaluate"] = page.evaluate(evaluate)
            report.title = page.title()
            report.images = page.evaluate(_IMAGES_JS)
            report.cut_off = page.evaluate(_OVERFLOW_JS)
            report.page_height = page.evaluate("() => document.documentElement.scrollHeight")
            if screenshot is not None:
                Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
                clip = None
                if screenshot_height:
                    clip = {"x": 0, "y": 0, "width": width, "height": min(screenshot_height, report.page_height)}
                page.screenshot(path=str(screenshot), full_page=True, clip=clip)
        finally:
            browser.close()
    return report


def main(argv: list[str] | None = None) -> int:
    """``python -m workbook.browser PAGE [--screenshot PNG]``: print what a reader sees; exit 1 if anything is off."""
    parser = argparse.ArgumentParser(prog="python -m workbook.browser", description=main.__doc__)
    parser.add_argument("page", type=Path)
    parser.add_argument("--screenshot", type=Path, default=None)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=None, help="keep the page's top HEIGHT pixels in the screenshot")
    args = parser.parse_args(argv)
    report = open_page(args.page, screenshot=args.screenshot, width=args.width, screenshot_height=args.height)
    print(report.summary())
    for problem in report.broken_images + report.cut_off + report.console_errors + report.failed_requests:
        print("  ", problem)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
