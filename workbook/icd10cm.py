"""The ICD-10-CM case study, built by code from the ``simple-icd-10-cm`` package (US public-domain data).

Build rules (also written to the datasheet):

- **Corpus**: one document per billable code (a leaf of the tabular list). ``_id`` is the code, ``text`` its
  description, ``title`` the code followed by its 3-character category's description, so the context is there.
- **Queries**: the real inclusion terms. A term on a billable code is relevant to that code. A term on a
  non-billable category/subcategory is relevant to every billable code below it when there are at most
  :data:`MAX_DESCENDANTS` of them, and left out otherwise (too broad to judge). Terms on chapters/blocks are left
  out. Terms equal after :func:`workbook.data.normalize_query` are merged (relevant to the union of codes); after
  the split draws, terms with the same wording under :func:`workbook.data.equivalence_key` (NOS/NEC also ignored:
  "Lymphadenitis" and "Lymphadenitis NOS") are merged into the first of them too, so one wording never sits in
  train and in test (and every other query keeps its split).
- **Exact-code queries** (labelled ``source: generated-code``): the bare code string (e.g. ``E11.65``) for a seeded
  sample of :data:`CODE_QUERY_FRACTION` of the billable codes, relevant to that code.
- **Splits** (seeded, :data:`BUILD_SEED`): :data:`HELDOUT_FRACTION` of the codes that carry inclusion terms are held
  out: every inclusion-term query touching one goes to test. Every other query, exact-code queries included (those
  of held-out codes too, so a held-out code can still have its bare code string in train), is split 70/10/20
  train/dev/test. A test/dev query is in the ``unseen-code`` slice when none of its relevant codes has a training
  query of any kind, else ``seen-code``: "unseen" is the slice that never had a training query.
- **Lookalike groups**: ``excludes1`` (a code's Excludes1 note names another category; codes with the same suffix
  under both, e.g. E11.65 and E10.65), ``category`` (billable codes of one 3-character category, 2 to 15 of them,
  e.g. STEMI I21.0x vs NSTEMI I21.4) and ``siblings`` (billable children of one subcategory, 2 to 10).
- **Query slices** (a query may carry several): ``exact-code``; ``abbreviation`` (an all-caps token of two or more
  letters, like STEMI; ICD's boilerplate NOS/NEC and Roman numerals do not count); ``colloquial`` (shares under a
  quarter of its words with every relevant description); ``lookalike`` (a relevant code is in an excludes1 group or
  has a sibling whose description shares at least half its words); ``other`` (none of these).
- **Fast subset**: categories E00-E35 (thyroid, diabetes, other endocrine glands) and I00-I52 (heart diseases);
  queries whose relevant codes all lie there (same ids and splits as the full build).

The build is deterministic: the same package version gives the same bytes (checked against ``MANIFEST.sha256``).
"""

from __future__ import annotations

import importlib.metadata
import json
import random
import re
from collections import defaultdict
from pathlib import Path

import pandas as pd

from workbook.config import Config, default_config
from workbook.data import (
    Dataset,
    content_words,
    equivalence_key,
    find_leakage,
    jaccard,
    load_dataset,
    normalize_query,
    save_dataset,
    slice_queries,  # noqa: F401  (generic, in data; notebooks import it from here too)
    subset,
)
from workbook.files import atomic_write, file_sha256

BUILD_SEED = 42
#: The build rules' version, written to each mode folder's ``.complete`` marker: a folder built by older rules is
#: rebuilt on first use instead of being read (2: terms merged by ``equivalence_key``, NOS/NEC ignored; 3: the fast
#: subset is category ranges :data:`FAST_CATEGORIES`, no longer whole chapters).
BUILD_RULES = 3
MAX_DESCENDANTS = 10
CODE_QUERY_FRACTION = 0.02
HELDOUT_FRACTION = 0.08
SPLIT_FRACTIONS = (("train", 0.7), ("dev", 0.1), ("test", 0.2))
#: Fast mode keeps these category ranges (inclusive): thyroid, diabetes and the other endocrine glands (E00-E35, in
#: chapter 4) and the heart diseases (I00-I52, in chapter 9), so type 1 vs type 2 diabetes and STEMI vs NSTEMI are
#: both there, in a corpus small enough for every encode of the test suite to take seconds on 2 CPU cores.
FAST_CATEGORIES = (("E00", "E35"), ("I00", "I52"))
SLICES = ("exact-code", "abbreviation", "colloquial", "lookalike", "other")
#: The lookalike groups drawn on the UMAP in notebooks 01 and 06 and in the case study's report: (a member code,
#: group kind). All four lie in the endocrine and circulatory chapters, so the same groups exist in fast and full mode.
UMAP_PICKS = (("I21.4", "category"), ("E10.21", "excludes1"), ("I22.0", "category"), ("I50.810", "siblings"))
_FILES = ("corpus.jsonl", "queries.jsonl", "qrels/train.tsv", "qrels/dev.tsv", "qrels/test.tsv", "lookalikes.jsonl")
_NOT_ABBREVIATIONS = {"NOS", "NEC"}
_ROMAN = re.compile(r"^[IVXL]+$")
_ABBREV = re.compile(r"\b(?=[A-Z0-9]*[A-Z]{2})[A-Z0-9]{2,}\b")
_REF = re.compile(r"\(([^()]*)\)\s*$")


def _cm():
    import simple_icd_10_cm as cm

    return cm


def package_version() -> str:
    """Installed ``simple-icd-10-cm`` version."""
    return importlib.metadata.version("simple-icd-10-cm")


def is_abbreviation_query(text: str) -> bool:
    """True when the text holds an all-caps abbreviation such as STEMI or HIV (not NOS/NEC/Roman numerals)."""
    return any(t not in _NOT_ABBREVIATIONS and not _ROMAN.match(t) for t in _ABBREV.findall(text))


def _excludes1_refs(note: str) -> list[str]:
    """Codes named in an Excludes1 note's trailing parentheses, e.g. ``(E10.-)`` -> ``["E10"]``."""
    m = _REF.search(note)
    if not m:
        return []
    refs = []
    for part in m.group(1).split(","):
        ref = part.strip().rstrip("-").rstrip(".")
        if ref and "-" not in ref:
            refs.append(ref)
    return refs


def _lookalike_groups(cm, billable: list[str], billable_set: set[str]) -> list[dict]:
    groups: list[dict] = []
    seen: set[tuple[str, ...]] = set()

    def add(kind: str, codes: list[str], anchor: str) -> None:
        key = tuple(sorted(set(codes)))
        if len(key) >= 2 and key not in seen:
            seen.add(key)
            groups.append({"kind": kind, "anchor": anchor, "codes": list(key)})

    # Excludes1: pair codes with the same suffix under the noted code and under each code its note names.
    for code in cm.get_all_codes():
        if cm.is_chapter_or_block(code):
            continue
        notes = cm.get_excludes1(code)
        if not notes:
            continue
        refs = [r for note in notes for r in _excludes1_refs(note) if cm.is_valid_item(r)]
        if not refs:
            continue
        leaves = [code] if code in billable_set else [d for d in cm.get_descendants(code) if d in billable_set]
        for leaf in leaves:
            suffix = leaf[len(code) :]
            twins = [r + suffix for r in refs if r + suffix in billable_set]
            if twins:
                add("excludes1", [leaf, *twins], code)
    # Category and sibling groups.
    by_category: dict[str, list[str]] = defaultdict(list)
    by_parent: dict[str, list[str]] = defaultdict(list)
    for code in billable:
        by_category[code[:3]].append(code)
        by_parent[cm.get_parent(code)].append(code)
    for cat, codes in by_category.items():
        if 2 <= len(codes) <= 15:
            add("category", codes, cat)
    for parent, codes in by_parent.items():
        if 2 <= len(codes) <= 10:
            add("siblings", codes, parent)
    for i, g in enumerate(groups):
        g["group_id"] = f"g{i:05d}"
    return [{"group_id": g["group_id"], "kind": g["kind"], "anchor": g["anchor"], "codes": g["codes"]} for g in groups]


def build() -> tuple[Dataset, dict]:
    """Build the full case study in memory.

    Returns:
        The dataset (``extras["lookalikes"]`` holds the lookalike groups) and a dict of build counts.
    """
    cm = _cm()
    all_codes = cm.get_all_codes()
    billable = [c for c in all_codes if not cm.is_chapter_or_block(c) and cm.is_leaf(c)]
    billable_set = set(billable)
    chapter_of = {c: cm.get_ancestors(c)[-1] for c in billable}
    desc = {c: cm.get_description(c) for c in billable}

    corpus = {}
    for code in billable:
        category = code[:3]
        title = code if category == code else f"{code} {cm.get_description(category)}"
        corpus[code] = {
            "title": title,
            "text": desc[code],
            "metadata": {"chapter": chapter_of[code], "category": category},
        }

    counts: dict = defaultdict(int)
    # Inclusion terms -> relevant billable codes, merged by normalised text, in ICD order.
    merged: dict[str, dict] = {}
    for code in all_codes:
        terms = cm.get_inclusion_term(code)
        if not terms:
            continue
        if cm.is_chapter_or_block(code):
            counts["terms dropped: on a chapter/block"] += len(terms)
            continue
        if code in billable_set:
            rel = [code]
        else:
            rel = [d for d in cm.get_descendants(code) if d in billable_set]
            if not rel or len(rel) > MAX_DESCENDANTS:
                counts[f"terms dropped: category with >{MAX_DESCENDANTS} billable codes"] += len(terms)
                continue
            counts["terms on a category (relevant to all its billable codes)"] += len(terms)
        for term in terms:
            counts["inclusion terms used"] += 1
            key = normalize_query(term)
            if not key:
                continue
            entry = merged.setdefault(key, {"text": term.strip(), "codes": [], "origin": code})
            entry["codes"].extend(c for c in rel if c not in entry["codes"])
    counts["terms merged as duplicates"] = counts["inclusion terms used"] - len(merged)

    queries: dict[str, str] = {}
    rel_codes: dict[str, list[str]] = {}
    source: dict[str, str] = {}
    for i, entry in enumerate(merged.values()):
        qid = f"q{i:05d}"
        queries[qid] = entry["text"]
        rel_codes[qid] = entry["codes"]
        source[qid] = "inclusion-term"

    rng = random.Random(BUILD_SEED)
    order = {c: i for i, c in enumerate(billable)}
    code_sample = sorted(rng.sample(billable, round(CODE_QUERY_FRACTION * len(billable))), key=order.__getitem__)
    for code in code_sample:
        qid = f"code-{code}"
        queries[qid] = code
        rel_codes[qid] = [code]
        source[qid] = "generated-code"

    # Splits: hold out some codes entirely, then a seeded 70/10/20 split of the rest.
    term_codes = sorted({c for q, cs in rel_codes.items() if source[q] == "inclusion-term" for c in cs})
    heldout = set(rng.sample(term_codes, round(HELDOUT_FRACTION * len(term_codes))))
    split_of: dict[str, str] = {}
    for qid in queries:
        if source[qid] == "inclusion-term" and heldout.intersection(rel_codes[qid]):
            split_of[qid] = "test"
            continue
        r = rng.random()
        acc = 0.0
        for split, frac in SPLIT_FRACTIONS:
            acc += frac
            if r < acc:
                split_of[qid] = split
                break
        else:
            split_of[qid] = SPLIT_FRACTIONS[-1][0]
    # One wording, one query (rules 2): terms equal under equivalence_key (NOS/NEC ignored) are merged *after* the
    # split draws, so that every other query keeps the split it had under rules 1. The first keeps its id and text,
    # is relevant to the union of the codes, and goes to test when that union touches a held-out code.
    same_wording: dict[str, list[str]] = defaultdict(list)
    for qid in queries:
        if source[qid] == "inclusion-term":
            same_wording[equivalence_key(queries[qid])].append(qid)
    for keep, *rest in (members for members in same_wording.values() if len(members) > 1):
        for qid in rest:
            rel_codes[keep].extend(c for c in rel_codes[qid] if c not in rel_codes[keep])
            del queries[qid], rel_codes[qid], source[qid], split_of[qid]
        if heldout.intersection(rel_codes[keep]):
            split_of[keep] = "test"
        counts["terms merged as the same wording (equivalence_key)"] += len(rest)
    trained_codes = {c for q, s in split_of.items() if s == "train" for c in rel_codes[q]}

    groups = _lookalike_groups(cm, billable, billable_set)
    in_excludes1 = {c for g in groups if g["kind"] == "excludes1" for c in g["codes"]}
    words = {c: content_words(desc[c]) for c in billable}
    by_parent: dict[str, list[str]] = defaultdict(list)
    for code in billable:
        by_parent[cm.get_parent(code)].append(code)
    close_sibling = {
        c
        for sibs in by_parent.values()
        for c in sibs
        if any(o != c and jaccard(words[c], words[o]) >= 0.5 for o in sibs)
    }

    meta: dict[str, dict] = {}
    for qid, text in queries.items():
        slices = []
        if source[qid] == "generated-code":
            slices.append("exact-code")
        else:
            if is_abbreviation_query(text):
                slices.append("abbreviation")
            qw = content_words(text)
            if max(jaccard(qw, words[c]) for c in rel_codes[qid]) < 0.25:
                slices.append("colloquial")
            if any(c in in_excludes1 or c in close_sibling for c in rel_codes[qid]):
                slices.append("lookalike")
        slices = slices or ["other"]
        m = {"split": split_of[qid], "source": source[qid], "slices": slices}
        if split_of[qid] != "train":
            m["codes"] = "seen-code" if trained_codes.intersection(rel_codes[qid]) else "unseen-code"
        meta[qid] = m

    qrels = {
        split: {q: {c: 1 for c in rel_codes[q]} for q in queries if split_of[q] == split}
        for split, _ in SPLIT_FRACTIONS
    }
    # The held-out codes are kept in memory only (the saved files are unchanged), so a test can check the split rule.
    ds = Dataset(corpus, queries, qrels, meta, name="icd10cm", extras={"lookalikes": groups,
                                                                       "heldout_codes": sorted(heldout)})
    leaks = find_leakage(ds)
    if leaks:  # cannot happen: terms are merged by the key find_leakage compares; kept as a guard on the build rules
        raise AssertionError(f"case-study build leaked {len(leaks)} eval queries into train, e.g. {leaks[0]}")
    counts["held-out codes"] = len(heldout)
    return ds, dict(counts)


def fast_subset(ds: Dataset, categories: tuple[tuple[str, str], ...] = FAST_CATEGORIES) -> Dataset:
    """The fast-mode subset: documents whose category lies in one of the ``(first, last)`` ranges, and the queries
    judged only on them."""
    docs = {d for d, doc in ds.corpus.items() if any(lo <= doc["metadata"]["category"] <= hi for lo, hi in categories)}
    inside = {q for judged in ds.qrels.values() for q, rel in judged.items() if set(rel) <= docs}
    small = subset(ds, doc_ids=docs, query_ids=inside, name="icd10cm-fast")
    small.extras = {"lookalikes": [g for g in ds.extras["lookalikes"] if set(g["codes"]) <= docs]}
    return small


def _write(ds: Dataset, folder: Path) -> None:
    save_dataset(ds, folder)
    atomic_write(folder / "lookalikes.jsonl", "".join(json.dumps(g) + "\n" for g in ds.extras["lookalikes"]))


def slice_counts(ds: Dataset) -> pd.DataFrame:
    """Queries per split (rows) and slice (columns; a query may be in several), with seen/unseen codes."""
    rows = {}
    for split in ds.splits:
        qids = list(ds.qrels[split])
        row = {"queries": len(qids)}
        row.update({s: sum(s in ds.query_meta[q]["slices"] for q in qids) for s in SLICES})
        row.update({k: sum(ds.query_meta[q].get("codes") == k for q in qids) for k in ("seen-code", "unseen-code")})
        rows[split] = row
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "split"
    return frame


def _slice_table(ds: Dataset) -> list[str]:
    frame = slice_counts(ds)
    lines = ["| split | " + " | ".join(frame.columns) + " |", "|---" * (len(frame.columns) + 1) + "|"]
    for split, row in frame.iterrows():
        cells = [
            "" if split == "train" and c.endswith("-code") and c != "exact-code" else str(v) for c, v in row.items()
        ]
        lines.append(f"| {split} | " + " | ".join(cells) + " |")
    return lines


def datasheet(full: Dataset, fast: Dataset, counts: dict) -> str:
    """The case study's datasheet (markdown): source, licence, version, how built, counts."""
    kinds = defaultdict(int)
    for g in full.extras["lookalikes"]:
        kinds[g["kind"]] += 1
    fast_kinds = defaultdict(int)
    for g in fast.extras["lookalikes"]:
        fast_kinds[g["kind"]] += 1
    lines = [
        "# ICD-10-CM retrieval case study: datasheet",
        "",
        "Generated by `python -m workbook.icd10cm` (`workbook.icd10cm.build`); do not edit by hand.",
        "",
        "## Source and licence",
        f"- Data: ICD-10-CM tabular list as shipped in the PyPI package `simple-icd-10-cm` {package_version()}",
        "  (files `code-list-April-2026.txt`, `icd10c-tabular-April-1-2026.xml`: the FY2026 April update).",
        "- ICD-10-CM is published by the US National Center for Health Statistics (CDC/NCHS) and CMS; as a work of",
        "  the US government it is in the public domain. The package's code is MIT-licensed.",
        "",
        "## How it is built",
        *[f"- {line.strip()}" for line in _build_rules()],
        "",
        "## Counts",
        f"- full: {len(full.corpus)} documents, {len(full.queries)} queries "
        f"({sum(m['source'] == 'generated-code' for m in full.query_meta.values())} generated exact-code)",
        f"- fast (categories {', '.join(f'{lo}-{hi}' for lo, hi in FAST_CATEGORIES)}): {len(fast.corpus)} documents, "
        f"{len(fast.queries)} queries",
        *[f"- {k}: {v}" for k, v in sorted(counts.items())],
        f"- lookalike groups (full): {dict(sorted(kinds.items()))}; fast: {dict(sorted(fast_kinds.items()))}",
        f"- train/eval leakage (same wording under `equivalence_key`): {len(find_leakage(full))}",
        "",
        "### Full, queries per split and slice (a query may be in several slices)",
        *_slice_table(full),
        "",
        "### Fast, queries per split and slice",
        *_slice_table(fast),
        "",
        "## Files (per mode folder `full/` and `fast/`)",
        "- `corpus.jsonl`, `queries.jsonl` (metadata: split, source, slices, seen/unseen codes), "
        "`qrels/{train,dev,test}.tsv`",
        "- `lookalikes.jsonl`: `group_id`, `kind` (excludes1/category/siblings), `anchor` code, `codes`",
        "- SHA-256 of each file in `MANIFEST.sha256`; the build is deterministic, so a rebuild must match it.",
        "",
    ]
    return "\n".join(lines)


def _build_rules() -> list[str]:
    doc = __doc__ or ""
    body = doc.split("Build rules (also written to the datasheet):", 1)[1].split("The build is deterministic", 1)[0]
    items, current = [], ""
    for line in body.strip().splitlines():
        if line.startswith("- "):
            if current:
                items.append(current)
            current = line[2:]
        else:
            current += " " + line.strip()
    if current:
        items.append(current)
    values = {k: str(v) for k, v in globals().items() if k.isupper()}
    items = [re.sub(r":data:`(\w+)`", lambda m: values.get(m.group(1), m.group(1)), it) for it in items]
    return [re.sub(r":func:`([\w.]+)`", r"`\1`", it).replace("``", "`") for it in items]


def write_case_study(out_dir: str | Path) -> Path:
    """Build and write both modes to ``out_dir/{full,fast}`` with ``DATASHEET.md`` and ``MANIFEST.sha256``.

    Each file is written atomically; the ``.complete`` marker of a mode folder is written last.
    """
    out = Path(out_dir)
    full, counts = build()
    fast = fast_subset(full)
    manifest = []
    for mode, ds in (("full", full), ("fast", fast)):
        _write(ds, out / mode)
        manifest += [f"{file_sha256(out / mode / f)}  {mode}/{f}" for f in _FILES]
    atomic_write(out / "DATASHEET.md", datasheet(full, fast, counts))
    atomic_write(out / "MANIFEST.sha256", "\n".join(manifest) + "\n")
    for mode in ("full", "fast"):
        atomic_write(out / mode / ".complete", _marker())
    return out


def _marker() -> str:
    """What a complete mode folder's ``.complete`` holds: the package version and the build rules' version."""
    return f"{package_version()} rules {BUILD_RULES}\n"


def load_lookalikes(folder: str | Path) -> list[dict]:
    """The lookalike groups saved beside a built case study."""
    with open(Path(folder) / "lookalikes.jsonl", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_icd10cm(cfg: Config | None = None) -> Dataset:
    """Load the case study for ``cfg.mode``, building it into ``cfg.data_dir / "icd10cm"`` on first use.

    Returns:
        The validated dataset; ``extras["lookalikes"]`` holds the lookalike groups, ``extras["slices"]`` the
        query slices in display order, ``extras["umap_picks"]`` the lookalike groups the maps draw.
    """
    cfg = cfg or default_config()
    folder = cfg.icd10cm_dir
    marker = folder / ".complete"
    if not marker.exists() or marker.read_text(encoding="utf-8") != _marker():  # missing, or built by older rules
        write_case_study(folder.parent)
    ds = load_dataset(folder, name=f"icd10cm-{cfg.mode}")
    ds.extras["lookalikes"] = load_lookalikes(folder)
    ds.extras["slices"] = list(SLICES)  # the slice order generic tables use (workbook.diagnose.metric_by_slice)
    ds.extras["umap_picks"] = list(UMAP_PICKS)  # the groups generic maps draw (workbook.diagnose.lookalike_projection)
    return ds


if __name__ == "__main__":  # python -m workbook.icd10cm [OUT_DIR]
    import sys

    target = Path(sys.argv[1]) if len(sys.argv) > 1 else default_config().data_dir / "icd10cm"
    print(write_case_study(target))
