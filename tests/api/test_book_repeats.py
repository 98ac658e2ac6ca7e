"""An alias that names an address twice, or a group that names a member twice, is stored
with each once, as first spelt and in the order given: an operator means a set, and
refusing would break imports that repeat (found by a stranger pass: both were stored as
given). Addresses compare as recipients do (`mailbox_key`: case ignored, a Unicode
domain equal to its punycode). Against a real `outbox serve`."""

from __future__ import annotations

from tests.processes import OutboxProcess


def test_an_alias_keeps_each_address_once_as_first_spelt(server: OutboxProcess) -> None:
    targets = ["Ann Lee <ann@bücher.test>", "bob@example.test", "ANN@xn--bcher-kva.test",
               "Bob <BOB@Example.Test>", "cy@example.test"]
    with server.client() as client:
        saved = client.put("/v1/aliases/repeats", json={"targets": targets})
        listed = client.get("/v1/aliases").json()
    assert saved.status_code == 200, saved.text
    kept = ["Ann Lee <ann@bücher.test>", "bob@example.test", "cy@example.test"]
    assert saved.json() == {"name": "repeats", "targets": kept}
    assert {"name": "repeats", "targets": kept} in listed


def test_a_group_keeps_each_member_once_in_the_order_given(server: OutboxProcess) -> None:
    with server.client() as client:
        contact = client.post("/v1/contacts", json={"name": "Dee", "emails": [
            "dee@example.test"]}).json()["id"]
        assert client.put("/v1/groups/Inner", json={"members": []}).status_code == 200
        members = [{"address": "ann@example.test"}, {"contact": contact},
                   {"group": "Inner"}, {"address": "Ann@EXAMPLE.test"},
                   {"contact": contact}, {"group": "  INNER "}, {"address": "eve@example.test"}]
        saved = client.put("/v1/groups/Outer", json={"members": members})
        listed = [g for g in client.get("/v1/groups").json() if g["name"] == "Outer"]
    assert saved.status_code == 200, saved.text
    kept = [{"address": "ann@example.test"}, {"contact": contact}, {"group": "Inner"},
            {"address": "eve@example.test"}]
    assert [{k: v for k, v in m.items() if v is not None} for m in saved.json()["members"]
            ] == kept
    assert [g["members"] for g in listed] == [saved.json()["members"]]


def test_an_unknown_member_after_a_repeat_is_named_where_it_was_given(
        server: OutboxProcess) -> None:
    """The repeat at members[1] is dropped before the store looks members up; the
    refusal still names members[2], where the request has the unknown contact."""
    members = [{"address": "ann@example.test"}, {"address": "ANN@example.test"},
               {"contact": 999_999}]
    with server.client() as client:
        refused = client.put("/v1/groups/Broken", json={"members": members})
    assert refused.status_code == 404, refused.text
    error = refused.json()["error"]
    assert (error["code"], error["field"]) == ("member_not_found", "members[2]")
    assert error["message"].startswith("members[2]: no contact with id 999999")
