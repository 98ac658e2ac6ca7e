"""Message ids and Message-IDs: their shape and their order in time."""

from __future__ import annotations

import os
import re
import time

from outbox import ids


def test_message_keys_sort_by_creation_time_and_message_ids_are_headers() -> None:
    made = []
    for _ in range(8):
        made.append((ids.new_message_key(), ids.new_message_id("example.test")))
        time.sleep(0.002)
    keys, headers = [key for key, _ in made], [header for _, header in made]
    assert all(re.fullmatch(r"[0-9a-f]{32}", key) for key in keys) and keys == sorted(keys)
    # Message-IDs too: their index grows at its end rather than at random pages.
    assert headers == sorted(headers)
    assert re.fullmatch(r"<[0-9a-f]{32}@mail\.example\.test>",
                        ids.new_message_id("mail.example.test"))
    assert ids.new_message_id("").endswith("@outbox.invalid>")


def test_random_parts_are_hex_of_the_asked_length_and_never_repeat() -> None:
    # More than one pool's worth, so the pool is read again on the way.
    drawn = [ids.random_hex(16) for _ in range(3 * ids.POOL_BYTES // 16 + 7)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in drawn)
    assert len(set(drawn)) == len(drawn)
    assert re.fullmatch(r"[0-9a-f]{10000}", ids.random_hex(5000))  # more than a pool


def test_a_forked_child_never_hands_out_its_parents_bytes() -> None:
    ids.random_hex(1)  # the pool holds bytes the child would otherwise inherit
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:  # the child: its next bytes, to the parent, then out at once
        try:
            os.write(writing, ids.random_hex(16).encode())
        finally:
            os._exit(0)  # never back into pytest, whatever happened
    os.close(writing)
    os.waitpid(child, 0)
    with os.fdopen(reading) as pipe:
        childs = pipe.read()
    assert re.fullmatch(r"[0-9a-f]{32}", childs)
    assert childs != ids.random_hex(16)
