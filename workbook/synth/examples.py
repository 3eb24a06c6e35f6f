"""A team's example questions (``examples.jsonl``): the prompt's style when there are no query logs to copy.

Most teams have documents and no query logs, but they can write down a handful of questions their users ask. Each
line of ``examples.jsonl`` is one such question::

    {"text": "can my landlord keep the deposit for normal wear and tear?"}
    {"text": "deposit kept after moving out", "doc_id": "d0412"}

``text`` is required; ``doc_id`` (optional) names the corpus document that answers it, which turns the example
into a full few-shot example (passage, then its questions). Examples are never evaluation queries: each is checked
against every split but ``train`` under :func:`workbook.data.equivalence_key`, and refused with the file, line
and the query it repeats.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from workbook.data import Dataset, DatasetError, Problem, equivalence_key, read_jsonl_objects
from workbook.synth.filters import eval_query_keys

#: The file's name in a BEIR-layout dataset folder.
EXAMPLES_FILE = "examples.jsonl"


@dataclass(frozen=True)
class Example:
    """One example question: its wording, the document that answers it (or ``None``) and its line in the file."""

    text: str
    doc_id: str | None
    line: int


def load_examples(path: str | Path, ds: Dataset) -> list[Example]:
    """Read and check a dataset's example questions.

    Args:
        path: the ``examples.jsonl`` file.
        ds: the dataset it belongs to, with its evaluation splits (a dev split carved out of train included).

    Returns:
        The examples in file order.

    Raises:
        DatasetError: every problem found, each with the file, line and field (bad JSON, a missing or empty
            ``text``, a ``doc_id`` not in the corpus, an example worded as an evaluation query).
    """
    path = Path(path)
    name = path.name
    eval_splits = [s for s in ds.splits if s != "train"]
    held_out = eval_query_keys(ds, eval_splits)  # the wording of every evaluation query -> its id
    split_of = {qid: s for s in reversed(eval_splits) for qid in ds.qrels[s]}
    problems: list[Problem] = []
    examples: list[Example] = []
    not_object = 'each line must be a JSON object like {"text": "..."}'
    for lineno, obj in read_jsonl_objects(path, problems, not_object):
        text, doc_id = obj.get("text"), obj.get("doc_id")
        if not isinstance(text, str) or not text.strip():
            problems.append(Problem(name, lineno, "text", "a non-empty string is required"))
            continue
        if doc_id is not None and (not isinstance(doc_id, str) or doc_id not in ds.corpus):
            problems.append(Problem(name, lineno, "doc_id", f"{doc_id!r} is not a document of the corpus"))
            continue
        hit = held_out.get(equivalence_key(text))
        if hit is not None:
            why = f"the wording of {split_of[hit]} query {hit!r}: evaluation queries never go into a prompt"
            problems.append(Problem(name, lineno, "text", why + " (write another example)"))
            continue
        examples.append(Example(text.strip(), doc_id, lineno))
    if not examples and not problems:
        problems.append(Problem(name, None, None, "no example: remove the file or add one question per line"))
    if problems:
        raise DatasetError(problems)
    return examples


def examples_summary(examples: Sequence[Example]) -> dict:
    """What a run records about the examples it used: how many, and how many name their document."""
    return {"examples": len(examples), "with_doc": sum(e.doc_id is not None for e in examples)}
