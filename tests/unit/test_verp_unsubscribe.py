"""core.verp (return paths), core.unsubscribe (one-click links) and
core.suppression.recipient_field: signed tokens that cannot be forged, and the JSON path
of a refused recipient."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outbox.core import verp
from outbox.core.suppression import recipient_field, suppression_key
from outbox.core.unsubscribe import make_token, read_token, unsubscribe_headers

SECRET = b"s" * 32
ID = "018f3a2b4c5d6e7f8091a2b3c4d5e6f7"


def test_a_return_path_names_its_message_and_fits_a_local_part() -> None:
    address = verp.return_path(ID, "bounces", "b.example.test", SECRET)
    local = address.rpartition("@")[0]
    assert local.startswith("bounces+") and len(local) <= 64
    assert verp.message_of(address, "bounces", "b.example.test", SECRET) == ID
    assert verp.message_of(f"<{address.upper()}>", "bounces", "b.example.test", SECRET) == ID


@pytest.mark.parametrize("change", [
    lambda a: a.replace("bounces+", "other+"),  # another local part
    lambda a: a.replace("b.example.test", "c.example.test"),  # another domain
    lambda a: a[:20] + ("0" if a[20] != "0" else "1") + a[21:],  # another message id
    lambda a: a.split("@")[0][:-1] + ("0" if a.split("@")[0][-1] != "0" else "1")
    + "@" + a.split("@")[1],  # another mac
    lambda a: a.split("+")[0] + "@" + a.split("@")[1],  # no token
])
def test_a_changed_return_path_names_no_message(change) -> None:  # type: ignore[no-untyped-def]
    address = change(verp.return_path(ID, "bounces", "b.example.test", SECRET))
    assert verp.message_of(address, "bounces", "b.example.test", SECRET) is None


def test_another_secret_names_no_message() -> None:
    address = verp.return_path(ID, "bounces", "b.example.test", SECRET)
    assert verp.message_of(address, "bounces", "b.example.test", b"t" * 32) is None


def test_the_bounce_mailbox_is_recognised_with_or_without_token() -> None:
    assert verp.is_bounce_address("bounces@B.example.test", "bounces", "b.example.test")
    assert verp.is_bounce_address("bounces+x.y@b.example.test", "bounces", "b.example.test")
    assert not verp.is_bounce_address("postmaster@b.example.test", "bounces", "b.example.test")
    assert not verp.is_bounce_address("bounces@example.test", "bounces", "b.example.test")


@given(st.text(min_size=1, max_size=40), st.emails())
def test_an_unsubscribe_token_round_trips_and_resists_changes(message_id: str,
                                                              address: str) -> None:
    message_id = message_id.replace(":", "")
    if not message_id:
        return
    token = make_token(message_id, address, SECRET)
    assert read_token(token, SECRET) == (message_id, address)
    assert read_token(token, b"other") is None
    assert read_token(token[:-1] + ("0" if token[-1] != "0" else "1"), SECRET) is None
    assert read_token("x" + token, SECRET) is None


@pytest.mark.parametrize("token", ["", ".", "abc", "!!!.123", "a" * 5000 + ".0"])
def test_garbage_tokens_are_refused(token: str) -> None:
    assert read_token(token, SECRET) is None


def test_one_click_headers() -> None:
    assert unsubscribe_headers("https://o.example/unsubscribe/t") == {
        "List-Unsubscribe": "<https://o.example/unsubscribe/t>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


@pytest.mark.parametrize(("fields", "address", "path"), [
    ({"to": ["ann@x.test", "Bob <BOB@x.test>"]}, "bob@x.test", "to[1]"),
    ({"to": "ann@x.test, bob@x.test"}, "bob@x.test", "to[1]"),
    ({"to": ["joann@x.test", "ann@x.test"]}, "ann@x.test", "to[1]"),
    ({"to": ["ann@x.test"], "cc": ["carl@x.test"]}, "carl@x.test", "cc[0]"),
    ({"to": [], "bcc": "hidden@x.test"}, "hidden@x.test", "bcc[0]"),
    ({"to": ["Team"], "cc": []}, "member@x.test", "to"),  # came from a group
    ({"envelope": ["e@x.test"]}, "e@x.test", "envelope[0]"),
])
def test_the_refused_recipient_is_named_by_its_json_path(fields, address, path) -> None:  # type: ignore[no-untyped-def]
    assert recipient_field(fields, address) == path


def test_suppression_keys_ignore_case_and_spaces() -> None:
    assert suppression_key("  Ann@Example.COM ") == "ann@example.com"
