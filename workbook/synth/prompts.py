"""Prompt templates (few-shot examples rendered for a completion or a chat model) and parsing the list back."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from workbook.files import text_sha256

#: Queries asked per document.
QUERIES_PER_DOC = 3

_BULLET = re.compile(r"^\s*(?:[-*\u2022]+\s*(?:\d+[.)]\s+)?|\d+[.)]\s*)")  # "- 2. what": the bullet and the number
_FIRST_NUMBER = re.compile(r"^\s*\d+[.)]\s+")  # the first item follows the prompt's "-": only a number to strip


def _sha(obj: Any, n: int = 16) -> str:
    """Short SHA-256 of a JSON-serialisable object (sorted keys), or of a string as is."""
    text = obj if isinstance(obj, str) else json.dumps(obj, sort_keys=True, ensure_ascii=False)
    return text_sha256(text, n)


@dataclass(frozen=True)
class Shot:
    """One few-shot example: a document's description and real queries that find it."""

    doc_id: str
    passage: str
    queries: tuple[str, ...]


@dataclass(frozen=True)
class PromptTemplate:
    """A prompt for a completion (base) model or a chat model, rendered per document.

    The completion form is ``instruction``, then the ``style`` examples (questions users wrote, for no document in
    particular) as a list, then each shot as ``Diagnosis: ...`` / ``Other names:`` / ``- query`` lines, then the
    document, ending with ``-`` so the model continues the list. The chat form asks the same with the style list in
    the system turn and the shots as earlier user/assistant turns.
    """

    name: str
    instruction: str
    shots: tuple[Shot, ...] = ()
    item_label: str = "Diagnosis"
    list_label: str = "Other names"
    style: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """A JSON-ready form (what the cache's registry stores; ``style`` only when there is one, so the hashes of
        templates without one are what they were before it existed)."""
        d = asdict(self)
        if not self.style:
            d.pop("style")
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> PromptTemplate:
        """Inverse of :meth:`to_dict`."""
        shots = tuple(Shot(s["doc_id"], s["passage"], tuple(s["queries"])) for s in d.get("shots", ()))
        labels = d.get("item_label", "Diagnosis"), d.get("list_label", "Other names")
        return cls(d["name"], d["instruction"], shots, *labels, style=tuple(d.get("style", ())))

    def _style(self) -> str:
        if not self.style:
            return ""
        return "Questions people have asked (about other passages):\n" + "".join(f"- {q}\n" for q in self.style)

    @property
    def hash(self) -> str:
        """Short SHA-256 of the template: the id outputs refer to."""
        return _sha(self.to_dict())

    @property
    def stop(self) -> list[str]:
        """Stop sequences: a blank line or the next item's label (the model starting a new entry)."""
        return ["\n\n", f"{self.item_label}:"]

    def _block(self, passage: str) -> str:
        return f"{self.item_label}: {passage}\n{self.list_label}:\n"

    def render(self, passage: str) -> str:
        """The completion prompt for one passage (ends with ``"-"``: the model writes the first query)."""
        parts = [self.instruction.strip() + "\n\n"]
        if self.style:
            parts.append(self._style() + "\n")
        for shot in self.shots:
            parts.append(self._block(shot.passage) + "".join(f"- {q}\n" for q in shot.queries) + "\n")
        parts.append(self._block(passage) + "-")
        return "".join(parts)

    def messages(self, passage: str) -> list[dict]:
        """The chat form: instruction as the system turn, each shot as a user/assistant exchange."""
        system = "\n\n".join(filter(None, [self.instruction.strip(), self._style().strip()]))
        msgs = [{"role": "system", "content": system}]
        for shot in self.shots:
            msgs.append({"role": "user", "content": self._block(shot.passage).strip()})
            msgs.append({"role": "assistant", "content": "\n".join(f"- {q}" for q in shot.queries)})
        msgs.append({"role": "user", "content": self._block(passage).strip()})
        return msgs


def parse_queries(text: str, n: int = QUERIES_PER_DOC) -> list[str]:
    """The first ``n`` list items of a completion (bullets and list numbers stripped), empty items kept.

    The prompt ends with ``"-"``, so the first line is the first item. An empty completion gives ``[""]``, so
    the ``format`` filter counts it instead of it silently disappearing.
    """
    lines = text.replace("\r", "").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    items = [(_BULLET if i else _FIRST_NUMBER).sub("", ln, count=1).strip() for i, ln in enumerate(lines)]
    return items[:n] or [""]
