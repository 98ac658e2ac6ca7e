"""Message ids and Message-IDs: their shape and their order in time."""

from __future__ import annotations

import re
import time

from outbox import ids


def test_message_keys_sort_by_creation_time_and_message_ids_are_headers() -> None:
    first = ids.new_message_key()
    time.sleep(0.002)
    second = ids.new_message_key()
    assert re.fullmatch(r"[0-9a-f]{32}", first) and first < second
    assert re.fullmatch(r"<[0-9a-f]{32}@mail\.example\.test>",
                        ids.new_message_id("mail.example.test"))
    assert ids.new_message_id("").endswith("@outbox.invalid>")
