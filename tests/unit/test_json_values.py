"""core.json_values: what JSON's parser lets through that Outbox cannot keep, and where."""

from __future__ import annotations

import json

import pytest

from outbox.core.json_values import unstorable


@pytest.mark.parametrize(("document", "path", "why"), [
    ('"\\ud800"', (), "lone UTF-16 surrogate (\\ud800)"),
    ('{"note": "a\\udfffb"}', ("note",), "lone UTF-16 surrogate (\\udfff)"),
    ('{"a": [1, {"b": NaN}]}', ("a", 1, "b"), "holds NaN"),
    ('{"big": 1e400}', ("big",), "Infinity, or a number past the range of a float"),
    ('[0, -Infinity]', (1,), "Infinity"),
    ('{"tags": {"\\udc00": 1}}', ("tags",), "has a key that holds a lone UTF-16 surrogate"),
])
def test_the_first_unkeepable_value_is_found_with_its_path(document: str, path: tuple[object, ...],
                                                          why: str) -> None:
    found = unstorable(json.loads(document))

    assert found is not None
    assert found[0] == path
    assert why in found[1]


def test_raw_bytes_of_a_surrogate_are_found_too() -> None:
    # json.loads decodes bytes with 'surrogatepass': an encoded surrogate becomes one
    found = unstorable(json.loads(b'{"text": "a\xed\xa0\x80b"}'))

    assert found is not None and found[0] == ("text",)


@pytest.mark.parametrize("document", [
    '{"text": "plain ascii", "n": 1.5, "i": 10, "t": true, "z": null}',
    '{"emoji": "\\ud83d\\ude00", "accents": "\\u00e9t\\u00e9", "cjk": "\\u4e2d\\u6587"}',
    '[1e308, -1e308, 5e-324]',
    '{"nested": [[[{"deep": "ok"}]]]}',
])
def test_valid_text_and_finite_numbers_pass(document: str) -> None:
    assert unstorable(json.loads(document)) is None


def test_objects_that_are_not_json_values_are_not_looked_into() -> None:
    class Model:
        text = "\ud800"

    assert unstorable(Model()) is None
    assert unstorable({"model": Model()}) is None
