"""Relational queries: "a red circle left of a blue square" -> subject, predicate, object.

Recognised phrases (case-insensitive, whole words): ``left of`` / ``to the left of``,
``right of`` / ``to the right of``, ``above`` / ``over``, ``below`` / ``under`` / ``beneath``,
``near`` / ``next to`` / ``beside``, ``inside`` / ``in`` / ``within``, ``containing`` and
``X with Y inside`` (both ``contains``). The leftmost phrase with text on both sides splits the
query (the longest phrase wins at one position); a text without one is not relational.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: phrase -> predicate (see :mod:`regionsearch.scene.relations`)
PHRASES: dict[str, str] = {
    "to the left of": "left_of", "on the left of": "left_of", "left of": "left_of",
    "to the right of": "right_of", "on the right of": "right_of", "right of": "right_of",
    "above": "above", "over": "above",
    "below": "below", "under": "below", "beneath": "below",
    "next to": "near", "beside": "near", "near": "near",
    "inside": "inside", "within": "inside", "in": "inside",
    "containing": "contains",
}
_PATTERN = re.compile(r"\b(" + "|".join(re.escape(p).replace(r"\ ", r"\s+")
                                        for p in sorted(PHRASES, key=len, reverse=True)) + r")\b", re.IGNORECASE)
_WITH_INSIDE = re.compile(r"^(?P<s>.+?)\s+with\s+(?P<o>.+?)\s+inside[.!?]?$", re.IGNORECASE)


@dataclass(frozen=True)
class RelationalQuery:
    """``subject`` and ``object`` texts and the predicate between them; ``phrase`` as written."""

    subject: str
    predicate: str
    object: str
    phrase: str

    def to_json(self) -> dict[str, str]:
        return {"subject": self.subject, "predicate": self.predicate, "object": self.object}


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip(" \t,.;:!?")


def parse_relational(text: str) -> RelationalQuery | None:
    """The relational reading of ``text``, or None when it has no relation phrase with text on
    both sides."""
    text = (text or "").strip()
    m = _WITH_INSIDE.match(text)
    if m and _clean(m["s"]) and _clean(m["o"]):
        return RelationalQuery(_clean(m["s"]), "contains", _clean(m["o"]), "with ... inside")
    for match in _PATTERN.finditer(text):
        subject, obj = _clean(text[:match.start()]), _clean(text[match.end():])
        if subject and obj:
            phrase = re.sub(r"\s+", " ", match.group(1).lower())
            return RelationalQuery(subject, PHRASES[phrase], obj, phrase)
    return None
