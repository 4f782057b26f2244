"""The relational-query parser: every phrase of the issue, word boundaries, the leftmost split."""

from __future__ import annotations

import pytest

from regionsearch.scene.query import parse_relational


@pytest.mark.parametrize("text,subject,predicate,obj", [
    ("a red circle left of a blue square", "a red circle", "left_of", "a blue square"),
    ("red circle to the left of blue square", "red circle", "left_of", "blue square"),
    ("red circle right of blue square", "red circle", "right_of", "blue square"),
    ("red circle to the right of blue square", "red circle", "right_of", "blue square"),
    ("a lamp above the table", "a lamp", "above", "the table"),
    ("a lamp over the table", "a lamp", "above", "the table"),
    ("cat below the table", "cat", "below", "the table"),
    ("cat under the table", "cat", "below", "the table"),
    ("cat beneath the table", "cat", "below", "the table"),
    ("dog near a car", "dog", "near", "a car"),
    ("dog next to a car", "dog", "near", "a car"),
    ("dog beside a car", "dog", "near", "a car"),
    ("the red car in the parking lot", "the red car", "inside", "the parking lot"),
    ("a fish inside a bowl", "a fish", "inside", "a bowl"),
    ("a fish within a bowl", "a fish", "inside", "a bowl"),
    ("a bowl containing a fish", "a bowl", "contains", "a fish"),
    ("a bowl with a fish inside", "a bowl", "contains", "a fish"),
    ("RED CIRCLE  Left   Of blue square.", "RED CIRCLE", "left_of", "blue square"),
])
def test_phrases(text, subject, predicate, obj):
    q = parse_relational(text)
    assert q is not None
    assert (q.subject, q.predicate, q.object) == (subject, predicate, obj)


@pytest.mark.parametrize("text", ["red circle", "a leftover sandwich", "window", "mineral water", "overcoat",
                                  "left of", "a house in", "in the box", ""])
def test_no_relation(text):
    assert parse_relational(text) is None


def test_leftmost_phrase_splits():
    q = parse_relational("a cat near a dog under a table")
    assert (q.subject, q.predicate, q.object) == ("a cat", "near", "a dog under a table")
