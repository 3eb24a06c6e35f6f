"""``make slides``: every course notebook becomes a reveal.js deck that opens offline in a real browser, with the
slides the rule (or the cell's own metadata) says, every figure decoded, and no request leaving the machine."""

from __future__ import annotations

import json
import re

import pytest

from workbook.browser import find_chromium, open_page
from workbook.config import get_config
from workbook.nbrun import notebook_paths
from workbook.slides import annotate, build_slides, count_slides, slide_type


def _md(text: str) -> dict:
    return {"cell_type": "markdown", "source": text, "metadata": {}}


def test_the_rule_and_an_instructors_own_choice():
    figure = {"cell_type": "code", "source": "plot()", "metadata": {},
              "outputs": [{"output_type": "display_data", "data": {"image/png": "..."}}]}  # fmt: skip
    table = {"cell_type": "code", "source": "df", "metadata": {}, "outputs": [{"data": {"text/html": "<table>"}}]}
    cells = [_md("# Title\ntext"), _md("## 1. A section"), _md("### A part"), _md("prose"), figure, table]
    assert [slide_type(c) for c in cells] == ["slide", "slide", "subslide", "-", "subslide", "-"]
    chosen = {**_md("## 2. Skipped"), "metadata": {"slideshow": {"slide_type": "skip"}}}
    assert slide_type(chosen) == "skip", "a cell's own slideshow metadata wins over the rule"
    nb = {"cells": [_md("intro"), *cells, chosen]}
    assert count_slides(nb) == 1 + 4, "the opening cell starts a slide; skipped cells count for nothing"
    assert [c["metadata"]["slideshow"]["slide_type"] for c in annotate(nb)["cells"]][:2] == ["-", "slide"]
    assert "slideshow" not in nb["cells"][0]["metadata"], "annotate works on a copy"


@pytest.fixture(scope="module")
def decks(tmp_path_factory):
    return build_slides(get_config(), out=tmp_path_factory.mktemp("slides"))


def test_every_notebook_has_a_deck_that_needs_no_network(decks):
    cfg = get_config()
    assert [d.name for d in decks] == [p.stem + ".slides.html" for p in notebook_paths(cfg)]
    for deck in decks:
        page = deck.read_text(encoding="utf-8")
        remote = re.findall(r'<(?:script|link)[^>]+(?:src|href)="(https?://[^"]+)"', page)
        assert not remote or all("unpkg.com/reveal.js" in u for u in remote), (deck.name, remote)
        nb = json.loads((cfg.root / "notebooks" / deck.name.replace(".slides.html", ".ipynb")).read_text())
        figures = sum("image/png" in o.get("data", {}) for c in nb["cells"] for o in c.get("outputs", []))
        assert page.count('src="data:image/png;base64,') == figures, deck.name


def test_decks_open_in_a_browser_with_every_slide_and_figure(decks):
    if find_chromium() is None:
        pytest.skip("no Chromium on this machine: install Debian's `chromium` package to open the decks")
    if not (decks[0].parent / "reveal.js" / "dist" / "reveal.js").is_file():
        pytest.skip("reveal.js could not be fetched from the npm registry: the decks load it from a CDN")
    cfg = get_config()
    for deck in decks:
        nb = json.loads((cfg.root / "notebooks" / deck.name.replace(".slides.html", ".ipynb")).read_text())
        seen = open_page(deck, evaluate="() => ({ready: Reveal.isReady(), slides: Reveal.getTotalSlides()})")
        assert seen.extra["evaluate"] == {"ready": True, "slides": count_slides(nb)}, deck.name
        assert not seen.broken_images and not seen.console_errors and not seen.failed_requests, seen.summary()


def test_the_teaching_guides_pacing_table_follows_the_notebooks():
    """docs/teaching.md's pacing table: each notebook's cells, slides and listed exercises as they are now."""
    cfg = get_config()
    text = (cfg.root / "docs" / "teaching.md").read_text(encoding="utf-8")
    block = text.split("<!-- pacing:start -->")[1].split("<!-- pacing:end -->")[0]
    shown = {m[0]: [int(m[1]), int(m[2]), int(m[3])]
             for m in re.findall(r"^\| `(\w+)` \| (\d+) \| (\d+) \| (\d+) \|$", block, re.M)}  # fmt: skip
    actual = {}
    for path in notebook_paths(cfg):
        nb = json.loads(path.read_text(encoding="utf-8"))
        markdown = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
        listed = re.findall(r"^\d+\. ", markdown.split("## Exercises")[1].split("\n## ")[0], re.M)
        actual[path.stem] = [len(nb["cells"]), count_slides(nb), len(listed)]
    assert shown == actual
