"""Recipients are one per mailbox whatever the case of either part (core.addresses).

A seed walk sent "Ops; ANN@example.test" (Ops holds ann) to ann, bob and ANN, and
`to: ann@…, cc: ANN@EXAMPLE.TEST` to both spellings, while the address book merges the
two as one person. The first spelling wins, in the order to > cc > bcc."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from outbox.core.addresses import mailbox_key, plan_envelope, plan_recipients
from outbox.core.contacts import AddressBook, Contact, Group, Member, address_key, name_key
from outbox.core.expand import expand_recipients

locals_ = st.text(string.ascii_letters + string.digits + "._-", min_size=1, max_size=8).filter(
    lambda s: not s.startswith(".") and not s.endswith(".") and ".." not in s)
domains = st.sampled_from(["example.test", "x.test", "mail.corp.test"])
addresses = st.builds(lambda local, domain: f"{local}@{domain}", locals_, domains)


@st.composite
def respelled(draw: st.DrawFn, address: str) -> str:
    """The address with the case of each letter drawn anew."""
    return "".join(c.upper() if draw(st.booleans()) else c.lower() for c in address)


@given(st.lists(addresses, min_size=1, max_size=6), st.data())
def test_one_recipient_per_mailbox_the_first_spelling_wins(mailboxes: list[str],
                                                           data: st.DataObject) -> None:
    spellings = [data.draw(respelled(a)) for a in mailboxes for _ in range(2)]
    split = data.draw(st.lists(st.sampled_from(["to", "cc", "bcc"]), min_size=len(spellings),
                               max_size=len(spellings)))
    fields = {f: [s for s, g in zip(spellings, split, strict=True) if g == f]
              for f in ("to", "cc", "bcc")}
    plan = plan_recipients(fields["to"], fields["cc"], fields["bcc"])
    ordered = fields["to"] + fields["cc"] + fields["bcc"]
    first: dict[str, str] = {}
    for spelling in ordered:
        first.setdefault(address_key(spelling), spelling)
    # The envelope's domain is the lower-case IDNA form; the local part as first spelled.
    assert [r.address.addr_spec for r in plan.envelope] == [
        f"{local}@{domain.lower()}" for local, _, domain in
        (spelling.rpartition("@") for spelling in first.values())]


@given(addresses, st.data())
def test_the_key_agrees_with_the_address_book(address: str, data: st.DataObject) -> None:
    other = data.draw(respelled(address))
    local, _, domain = other.rpartition("@")
    assert (mailbox_key(local, domain) == mailbox_key(*address.rsplit("@", 1))) == (
        address_key(other) == address_key(address))


def test_to_and_cc_in_other_case_are_one_recipient() -> None:
    plan = plan_recipients("ann@example.test", "ANN@EXAMPLE.TEST", "Ann@Example.Test")
    assert [(r.address.addr_spec, r.kind.value) for r in plan.envelope] == [
        ("ann@example.test", "to")]
    assert plan.cc == ()


def test_an_smtp_envelope_names_a_mailbox_once() -> None:
    plan = plan_envelope("Ann <ANN@example.test>", None, ["ann@example.test",
                                                          "ANN@EXAMPLE.TEST"])
    assert [(r.address.addr_spec, r.kind.value) for r in plan.envelope] == [
        ("ann@example.test", "to")]


def test_a_group_member_typed_again_in_capitals_is_one_recipient() -> None:
    ann = Contact(1, "Ann", ("ann@example.test",))
    ops = Group("Ops", (Member.contact(1), Member.address("bob@example.test")))
    book = AddressBook(aliases={}, groups={name_key("Ops"): ops},
                       contacts_by_name={name_key("Ann"): (ann,)}, contacts_by_id={1: ann})
    expansion = expand_recipients("Ops; ANN@example.test", None, None, book)
    plan = plan_recipients(expansion.to, expansion.cc, expansion.bcc)
    assert [(r.address.addr_spec, expansion.provenance_of(r.address.addr_spec))
            for r in plan.envelope] == [("ann@example.test", "group:Ops > contact:Ann"),
                                        ("bob@example.test", "group:Ops")]
