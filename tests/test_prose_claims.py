"""Prose cannot drift from results: every number in notebook markdown, the READMEs and docs/ is backed by a
committed measured value (workbook.claims), or listed with the reason it is not a measurement."""

from __future__ import annotations

import pytest

from workbook import claims
from workbook.config import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
DOCUMENTS = ["README.md", "notebooks/README.md", "docs/teaching.md", "docs/your_own_data.md"]


def _show(bad: list[claims.Claim]) -> str:
    return "\n".join(f"{c.where}: {c.text!r} in ...{c.context}..." for c in bad)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_prose_numbers_are_its_own_outputs(path):
    bad = claims.check_notebook(path)
    assert not bad, "numbers in markdown that no output of the notebook shows:\n" + _show(bad)


@pytest.fixture(scope="module")
def evidence():
    return claims.project_evidence()


@pytest.mark.parametrize("rel", DOCUMENTS)
def test_document_numbers_are_committed_results(rel, evidence):
    bad = claims.check_text((ROOT / rel).read_text(encoding="utf-8"), rel, evidence)
    assert not bad, "numbers no notebook output or results file shows:\n" + _show(bad)


def test_a_readme_number_edited_by_hand_is_caught(evidence):
    """Edit one measured number of the README's results by hand (the last digit): the check must flag it."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    measured = [c for c in claims.prose_claims(text, "README.md") if c.decimals >= 3 and evidence.backs(c)]
    assert len(measured) > 20
    caught = 0
    for claim in measured:
        last = int(claim.text[-1])
        edited = claim.text[:-1] + str((last + 1) % 10)
        caught += bool(claims.check_text(text.replace(claim.text, edited, 1), "README.md", evidence))
    print(f"{caught} of {len(measured)} edits caught")
    assert caught / len(measured) > 0.9, (caught, len(measured))


def test_every_allowed_number_is_still_in_its_file():
    """A stale allow-list entry hides nothing, but says something false: drop it when the prose drops the number."""
    for rel, allowed in claims.ALLOWED.items():
        path = ROOT / rel
        text = claims.notebook_markdown(path) if path.suffix == ".ipynb" else path.read_text(encoding="utf-8")
        found = {c.text for c in claims.prose_claims(text, rel)}
        assert set(allowed) <= found, (rel, set(allowed) - found)


def test_claims_parsing():
    got = [c.text for c in claims.prose_claims("Recall@10 0.751 (+24.9 points), 13,089 rows, `0.5`, E11.65, "
                                              "gemma-3-270m, p ≤ 0.001, 2 cores, −6.3 nDCG@10", "x")]
    assert got == ["0.751", "+24.9", "13,089", "0.001", "−6.3"]
    ev = claims.Evidence([0.75092, 0.2486, 13089.0, 0.063])
    assert all(ev.backs(c) for c in claims.prose_claims("0.751 24.9 13,089 −6.3", "x"))
    assert not any(ev.backs(c) for c in claims.prose_claims("0.752 24.8 13,090 −6.4", "x"))
