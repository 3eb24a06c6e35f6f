"""Prose that cannot drift: every number a reader sees in prose must be backed by a measured value.

A *claim* is a number in prose: a notebook's markdown, the READMEs, ``docs/``. It is *backed* when a value in its
evidence rounds to it at the precision the prose prints (``0.751`` is backed by ``0.75092``; ``24.9`` points or
percent by ``0.249``; signs are ignored, since prose writes gains as ``+0.073`` and drops as ``−6.3``). The evidence
of a notebook is its own committed outputs (the full-mode run); the evidence of the READMEs and docs is every
notebook's outputs plus ``bench/results/*.json``. Integers under 100 are not checked (list positions, small counts,
"2 cores"), nor text in inline code or link targets.

A number that no output shows (a build constant, a package version, an arithmetic summary) is listed in
:data:`ALLOWED` with the reason it is not a measurement; anything else unbacked fails ``tests/test_claims.py``, so a
number edited by hand, or left behind when a rerun changed its result, is caught in ``make test``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from workbook.config import ROOT

# A number not glued to a word or another number: "0.751", "+24.9", "−6.3", "13,089", "2.9" (but not "E11.65",
# "gemma-3-270m", "MiniLM-L6" or "v2"). The minus sign may be ASCII or U+2212.
_NUMBER = re.compile(r"(?<![\w.\-/@])[+\-\u2212]?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w.]\d|\w|/)|"
                     r"(?<![\w.\-/@])[+\-\u2212]?\d+(?:\.\d+)?(?![\w/]|\.\d)")  # fmt: skip
_SCI = re.compile(r"[-+]?\d+\.\d+e[-+]\d+")
_CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)
_LINK_TARGET = re.compile(r"\]\([^)]*\)")
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)

#: Numbers in prose that are not measurements, per file (path relative to the repository root): value -> reason.
ALLOWED: dict[str, dict[str, str]] = {
    "notebooks/01_diagnose_mismatch.ipynb": {
        "909": "fast-mode corpus size, a property of the build (tests/test_icd10cm.py checks it)",
        "30,522": "MiniLM's WordPiece vocabulary size, a property of the model",
    },
    "notebooks/02_baseline.ipynb": {
        "0.05": "the gate's margin, a setting (workbook.diagnose.should_fine_tune)",
        "0.90": "the target, a setting (cfg.target_recall_at_10)",
        "200": "exercise 1's RRF constant to try, a setting",
    },
    "notebooks/04_synthetic_data.ipynb": {
        "253": "size of the packaged GGUF file in MB (the package's, not a measurement)",
        "160": "a filter setting (characters), see workbook.synth.FilterSettings",
        "0.25": "the colloquial slice's threshold, a build rule",
    },
    "notebooks/06_evaluate.ipynb": {
        "2,000": "bootstrap resamples, a setting",
        "300": "exercise 2's sample size",
        "0.01": "the lift assert's significance level, a setting",
    },
    "README.md": {"3.11": "the Python version set-up needs", "2013": "the year AVX2 laptop CPUs appeared"},
    "docs/teaching.md": {
        "3.11": "the Python version set-up needs",
        "1.25": "a teaching block's length (hours), not a measurement",
    },
    "notebooks/07_deploy.ipynb": {
        "909": "fast-mode corpus size, a property of the build (tests/test_icd10cm.py checks it)",
        "1.20": "qdrant-client version",
    },
}


@dataclass(frozen=True)
class Claim:
    """One number in prose: where it is and how it reads."""

    where: str
    text: str
    context: str

    @property
    def value(self) -> float:
        """The number, unsigned."""
        return abs(float(self.text.replace(",", "").replace("\u2212", "-")))

    @property
    def decimals(self) -> int:
        """Digits after the decimal point as printed."""
        return len(self.text.split(".")[1]) if "." in self.text else 0


def prose_claims(text: str, where: str) -> list[Claim]:
    """The checkable numbers of a markdown text: decimals, and integers of 100 or more, outside code and links."""
    clean = _HTML_COMMENT.sub(" ", _LINK_TARGET.sub("]", _CODE.sub(" ", text)))
    out = []
    for m in _NUMBER.finditer(clean):
        claim = Claim(where, m.group(), " ".join(clean[max(0, m.start() - 70) : m.end() + 30].split()))
        if claim.decimals or claim.value >= 100:
            out.append(claim)
    return out


def numbers_in(text: str) -> list[float]:
    """Every number printed in ``text`` (outputs, JSON), unsigned."""
    vals = [abs(float(m.group().replace(",", "").replace("\u2212", "-"))) for m in _NUMBER.finditer(text)]
    return vals + [abs(float(m.group())) for m in _SCI.finditer(text)]


def _json_numbers(obj) -> Iterable[float]:
    if isinstance(obj, bool):
        return
    if isinstance(obj, int | float):
        yield abs(float(obj))
    elif isinstance(obj, Mapping):
        for v in obj.values():
            yield from _json_numbers(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _json_numbers(v)
    elif isinstance(obj, str):
        yield from numbers_in(obj)


def notebook_markdown(path: Path) -> str:
    """The notebook's markdown cells, joined."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


def notebook_evidence(path: Path) -> list[float]:
    """Every number in the notebook's committed code-cell outputs (text and stream outputs)."""
    vals: list[float] = []
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        for out in cell.get("outputs", []) if cell["cell_type"] == "code" else []:
            text = out.get("text") or out.get("data", {}).get("text/plain") or ""
            vals += numbers_in("".join(text))
    return vals


def notebook_records(path: Path) -> list[list[float]]:
    """The numbers of each printed table row of the notebook's outputs: the values after one row label in one output
    (a wide pandas table prints a row in several blocks: they are joined)."""
    records: dict[tuple[int, int, str], list[float]] = {}
    for i, cell in enumerate(json.loads(path.read_text(encoding="utf-8"))["cells"]):
        for j, out in enumerate(cell.get("outputs", []) if cell["cell_type"] == "code" else []):
            text = "".join(out.get("text") or out.get("data", {}).get("text/plain") or "")
            for line in text.splitlines():
                first = _NUMBER.search(line)
                if first:
                    records.setdefault((i, j, line[: first.start()].strip()), []).extend(numbers_in(line))
    return list(records.values())


def _json_records(obj) -> Iterable[list[float]]:
    """One record per JSON object (its own numbers), recursively."""
    if isinstance(obj, Mapping):
        own = [v for v in obj.values() if not isinstance(v, Mapping | list | tuple)]
        if own:
            yield list(_json_numbers(own))
        for v in obj.values():
            if isinstance(v, Mapping | list | tuple):
                yield from _json_records(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _json_records(v)


def results_evidence(folder: Path) -> list[float]:
    """Every number in the JSON results files of ``folder`` (e.g. ``bench/results``)."""
    return [v for path in sorted(folder.glob("*.json")) for v in file_evidence(path.name, folder)]


def _readings(values: Iterable[float]) -> set[tuple[int, float]]:
    """How each value reads at 0-4 decimals, as is and x100 (points, percent)."""
    seen: set[tuple[int, float]] = set()
    for v in values:
        for d in range(5):
            seen.add((d, round(v, d)))
            seen.add((d, round(100 * v, d)))
    return seen


def _reading(claim: Claim) -> tuple[int, float]:
    d = min(claim.decimals, 4)
    return d, round(claim.value, d)


class Evidence:
    """A set of measured values, indexed by how they read at 0-4 decimals (as is, and x100 for points/percent), and
    optionally grouped into records (table rows, JSON objects) that must back a table row of prose together."""

    def __init__(self, values: Iterable[float], records: Iterable[Iterable[float]] = ()):
        self.seen = _readings(values)
        self.records = [_readings(r) for r in records]

    def backs(self, claim: Claim) -> bool:
        """True when some value prints as the claim at the claim's precision."""
        return _reading(claim) in self.seen

    def backs_row(self, claims: Sequence[Claim]) -> bool:
        """True when one record backs every claim of a prose table row (all its numbers from one measured row)."""
        wanted = {_reading(c) for c in claims}
        return any(wanted <= r for r in self.records)


def _not_allowed(claims: Iterable[Claim], allowed: Mapping[str, str] | None) -> list[Claim]:
    """The claims no allow-list entry explains."""
    return [c for c in claims if c.text not in (allowed or {})]


def unbacked(claims: Iterable[Claim], evidence: Evidence, allowed: Mapping[str, str] | None = None) -> list[Claim]:
    """The claims no evidence backs and no allow-list entry explains."""
    return [c for c in _not_allowed(claims, allowed) if not evidence.backs(c)]


def check_notebook(path: Path, root: Path = ROOT) -> list[Claim]:
    """Unbacked numbers in a notebook's markdown (evidence: its own outputs)."""
    rel = path.relative_to(root).as_posix()
    claims = prose_claims(notebook_markdown(path), rel)
    return unbacked(claims, Evidence(notebook_evidence(path)), ALLOWED.get(rel))


#: Committed, generated files whose numbers back README and docs claims besides the notebooks' outputs.
RESULT_FILES = ("data/icd10cm/DATASHEET.md",)


def project_evidence(root: Path = ROOT) -> Evidence:
    """Every notebook's outputs, ``bench/results/*.json`` and :data:`RESULT_FILES`: the evidence for READMEs and
    docs."""
    vals: list[float] = []
    for nb in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        vals += notebook_evidence(nb)
    for rel in RESULT_FILES:
        vals += numbers_in((root / rel).read_text(encoding="utf-8"))
    return Evidence(vals + results_evidence(root / "bench" / "results"))


_SCOPE = re.compile(r"<!-- evidence: ([^>]*?) -->")


def file_evidence(rel: str, root: Path = ROOT) -> list[float]:
    """The numbers of one evidence source: a notebook's outputs, a JSON results file, or a generated text file."""
    path = root / rel
    if path.suffix == ".ipynb":
        return notebook_evidence(path)
    if path.suffix == ".json":
        return list(_json_numbers(json.loads(path.read_text(encoding="utf-8"))))
    return numbers_in(path.read_text(encoding="utf-8"))


#: Evidence of a scoped section by its sources and their (modification time, size): indexing a notebook's outputs is
#: the cost of a check, and the same sources are checked many times (the prose-claims test edits 200+ numbers).
_SCOPED: dict[tuple, Evidence] = {}


def _scoped_evidence(rels: tuple[str, ...], root: Path) -> Evidence:
    """The :class:`Evidence` of these sources (values and records), built again only when one of them changed."""
    stats = [(root / rel).stat() for rel in rels]
    key = (str(root), *((rel, st.st_mtime_ns, st.st_size) for rel, st in zip(rels, stats, strict=True)))
    if key not in _SCOPED:
        _SCOPED[key] = Evidence((v for rel in rels for v in file_evidence(rel, root)),
                                (r for rel in rels for r in file_records(rel, root)))  # fmt: skip
    return _SCOPED[key]


def check_text(text: str, where: str, evidence: Evidence, root: Path = ROOT) -> list[Claim]:
    """Unbacked numbers in a markdown document.

    A comment ``<!-- evidence: notebooks/06_evaluate.ipynb bench/results/quality.json -->`` scopes the text after it
    (up to the next such comment) to those sources only: a results section is then checked against the run it
    reports, not against every number the project prints, so an edited digit is far less likely to match by chance.
    Text before the first comment is checked against ``evidence``.
    """
    parts = _SCOPE.split(text)
    bad = unbacked(prose_claims(parts[0], where), evidence, ALLOWED.get(where))
    for sources, body in zip(parts[1::2], parts[2::2], strict=True):
        scoped = _scoped_evidence(tuple(sources.split()), root)
        for line in body.splitlines():
            claims = _not_allowed(prose_claims(line, where), ALLOWED.get(where))
            if line.lstrip().startswith("|") and len(claims) >= ROW_CLAIMS:
                bad += [] if scoped.backs_row(claims) else claims  # a table row: one measured row backs it all
            else:
                bad += [c for c in claims if not scoped.backs(c)]
    return bad


#: A prose table row with at least this many numbers must be backed by one measured row (in a scoped section).
ROW_CLAIMS = 3


def file_records(rel: str, root: Path = ROOT) -> list[list[float]]:
    """The records (rows, objects) of one evidence source, for :meth:`Evidence.backs_row`."""
    path = root / rel
    if path.suffix == ".ipynb":
        return notebook_records(path)
    if path.suffix == ".json":
        return list(_json_records(json.loads(path.read_text(encoding="utf-8"))))
    return [numbers_in(line) for line in path.read_text(encoding="utf-8").splitlines()]
