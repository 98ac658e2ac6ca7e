"""`core.integrity.judge` on a message whose attachment is broken and that is held
already: holding it is no repair, so --repair is not offered for it."""

from __future__ import annotations

from outbox.core.integrity import BrokenBlob, Facts, SchemaFacts, judge

HEAD = SchemaFacts("0010", "0010", True)


def test_a_held_message_with_a_broken_attachment_is_fixed_by_hand() -> None:
    waiting, held = judge(Facts(HEAD, broken_blobs=(
        BrokenBlob("m1", "cd" * 32, "missing"), BrokenBlob("m2", "cd" * 32, "missing", True))))

    assert waiting.repairable and "--repair holds it" in waiting.fix
    assert not held.repairable and "--repair" not in held.line()
    assert "outbox queue retry m2" in held.fix and "held until then" in held.fix
