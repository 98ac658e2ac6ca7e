"""The envelope's quoting of addresses: its shortcut for plain addresses answers exactly as
aiosmtplib's `quote_address`, and everything else still goes through it."""

from __future__ import annotations

import pytest
from aiosmtplib.email import quote_address
from hypothesis import given
from hypothesis import strategies as st

from outbox.delivery.smtp.envelope import _PLAIN, Envelope

ATOM = "A-Za-z0-9.!#$%&'*+/=?^_`{|}~-"


@given(st.from_regex(_PLAIN, fullmatch=True))
def test_a_plain_address_is_quoted_as_aiosmtplib_quotes_it(address: str) -> None:
    envelope = Envelope.build(address, [address])
    expected = quote_address(address).encode("ascii")
    assert envelope.sender == expected
    assert envelope.recipients == ((address, expected),)


@given(st.text(alphabet=st.sampled_from(ATOM + "@ \"<>()[],;:\\é\r\n"), min_size=1,
               max_size=30))
def test_any_address_is_quoted_as_aiosmtplib_quotes_it_or_refused_as_it_refuses(
        address: str) -> None:
    try:
        expected = quote_address(address)
    except ValueError:
        with pytest.raises(ValueError):
            Envelope.build(address, [])
        return
    utf8 = not address.isascii()
    assert Envelope.build(address, []).sender == expected.encode("utf-8" if utf8 else "ascii")


@pytest.mark.parametrize("address, wire", [
    ("ann@example.com", b"<ann@example.com>"),
    ("Ann <ann@example.com>", b"<ann@example.com>"),  # not plain: parsed as a header
    ('"ann smith"@example.com', b'<"ann smith"@example.com>'),
    ("ann@[192.0.2.1]", b"<ann@[192.0.2.1]>"),
])
def test_known_addresses(address: str, wire: bytes) -> None:
    assert Envelope.build(address, []).sender == wire


@pytest.mark.parametrize("address", ["ann@example.com>\r\nRCPT TO:<eve@example.com",
                                     "ann@example.com\r\nRSET", "ann smith@example.com"])
def test_an_address_never_carries_a_second_command(address: str) -> None:
    try:
        envelope = Envelope.build(address, [])
    except ValueError:
        return
    assert b"\r" not in envelope.sender and b"\n" not in envelope.sender
    assert envelope.sender.count(b"<") == 1
