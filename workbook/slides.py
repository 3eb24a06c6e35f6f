"""Slides an instructor presents from the notebooks themselves: one reveal.js deck per course notebook, offline.

``make slides`` (``workbook slides [NN ...]``) exports each course notebook, with its committed outputs, through
nbconvert's ``SlidesExporter`` into ``runs/slides/<notebook>.slides.html``, beside a local copy of reveal.js, so a
deck opens from disk in any browser with no network. Which cell starts a slide comes from the cell's own
``slideshow`` metadata where an instructor set it (JupyterLab: the property inspector, "Slide Type"), and otherwise
from one rule (:func:`slide_type`): every section heading starts a slide, every sub-section and every figure a
sub-slide (down arrow), the rest follows on the same slide, which scrolls when it is taller than the screen.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

from workbook.config import Config
from workbook.files import atomic_write

REVEAL_VERSION = "4.0.2"  # the version nbconvert's reveal template is written for
REVEAL_CDN = f"https://unpkg.com/reveal.js@{REVEAL_VERSION}"
TEMPLATE = "workbook_slides"  # workbook/templates/workbook_slides: reveal.js from a local copy, no CDN scripts
SLIDE_STARTS = ("slide", "subslide")


def slide_type(cell: dict) -> str:
    """The reveal.js role of a notebook cell: its own ``slideshow.slide_type`` if set, else the course's rule.

    Rule: a markdown cell opening with a ``#`` or ``##`` heading starts a ``slide``; one opening with ``###``, and a
    code cell that shows a figure, start a ``subslide``; any other cell continues the current one (``-``).
    """
    own = cell.get("metadata", {}).get("slideshow", {}).get("slide_type")
    if own:
        return own
    text = "".join(cell.get("source", "")).lstrip()
    if cell["cell_type"] == "markdown":
        if text.startswith(("# ", "## ")):
            return "slide"
        if text.startswith("### "):
            return "subslide"
    if cell["cell_type"] == "code" and any("image/png" in o.get("data", {}) for o in cell.get("outputs", [])):
        return "subslide"
    return "-"


def annotate(nb: dict) -> dict:
    """A copy of the notebook with every cell's ``slideshow.slide_type`` set (:func:`slide_type`)."""
    nb = copy.deepcopy(nb)
    for cell in nb["cells"]:
        cell.setdefault("metadata", {}).setdefault("slideshow", {})["slide_type"] = slide_type(cell)
    return nb


def count_slides(nb: dict) -> int:
    """How many slides and sub-slides a deck of this notebook has (the first cell always opens one)."""
    kinds = [slide_type(c) for c in nb["cells"] if slide_type(c) not in ("skip", "notes")]
    return sum(k in SLIDE_STARTS for k in kinds) + (bool(kinds) and kinds[0] not in SLIDE_STARTS)


def reveal_assets(cache_dir: Path) -> Path | None:
    """reveal.js's ``dist/`` and notes plugin, unpacked once into ``cache_dir`` from the npm registry (``npm pack``).

    Returns:
        The folder holding ``dist/`` and ``plugin/``, or ``None`` where npm is missing or the registry cannot be
        reached (the decks then load reveal.js from a CDN and need a network to show).
    """
    folder = cache_dir / f"reveal.js-{REVEAL_VERSION}"
    if (folder / "dist" / "reveal.js").is_file():
        return folder
    npm = shutil.which("npm")
    if npm is None:
        return None
    with tempfile.TemporaryDirectory(dir=cache_dir.parent if cache_dir.parent.is_dir() else None) as tmp:
        done = subprocess.run([npm, "pack", f"reveal.js@{REVEAL_VERSION}", "--silent"], cwd=tmp,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        tarballs = list(Path(tmp).glob("reveal.js-*.tgz"))
        if done.returncode != 0 or not tarballs:
            print(f"slides: npm could not fetch reveal.js {REVEAL_VERSION} ({done.stderr.strip()[-200:]})")
            return None
        with tarfile.open(tarballs[0]) as tar:
            keep = [m for m in tar.getmembers() if m.name.startswith(("package/dist/", "package/plugin/notes/"))]
            tar.extractall(tmp, members=keep, filter="data")
        staging = Path(tmp) / "package"
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)  # a complete copy or none: the check above looks for dist/reveal.js
    return folder


def build_slides(cfg: Config, names: Sequence[str] = (), out: Path | None = None) -> list[Path]:
    """Export the course notebooks (or those starting with ``names``) as reveal.js decks.

    Args:
        cfg: the configuration (its root's ``notebooks/``, its cache for reveal.js).
        names: notebook prefixes such as ``"02"`` (default: all eight).
        out: the folder for the decks (default ``runs/slides``).

    Returns:
        The decks written, in notebook order.
    """
    import nbformat
    from nbconvert.exporters import SlidesExporter

    from workbook.nbrun import notebook_paths

    out = out or cfg.root / "runs" / "slides"
    out.mkdir(parents=True, exist_ok=True)
    assets = reveal_assets(cfg.cache_dir)
    if assets is not None:
        local = out / "reveal.js"
        if not (local / "dist" / "reveal.js").is_file():
            shutil.rmtree(local, ignore_errors=True)
            shutil.copytree(assets, local)
        prefix = "reveal.js"
    else:
        prefix = REVEAL_CDN
        print(f"slides: reveal.js is loaded from {REVEAL_CDN}; the decks need a network to show")
    exporter = SlidesExporter(
        template_name=TEMPLATE,
        extra_template_basedirs=[str(Path(__file__).parent / "templates")],
        reveal_url_prefix=prefix,
        reveal_theme="white",
        reveal_number="c/t",
        reveal_width="1280",
        reveal_height="800",
    )
    decks = []
    for path in notebook_paths(cfg, names):
        nb = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
        body, _ = exporter.from_notebook_node(nbformat.from_dict(annotate(nb)), {"metadata": {"name": path.stem}})
        deck = out / f"{path.stem}.slides.html"
        atomic_write(deck, body)
        print(f"slides: {deck.relative_to(cfg.root) if deck.is_relative_to(cfg.root) else deck} "
              f"({count_slides(nb)} slides)")  # fmt: skip
        decks.append(deck)
    return decks
