"""What a worker's attempts may hold in memory: the content each message carries (text,
HTML, embedded files), and how many messages a claim may take at the default budget."""

from __future__ import annotations

from outbox.config import Settings
from outbox.core.content import AttachmentRef, EmbeddedFile, MessageContent
from outbox.worker.loop import HELD_CONTENT, affordable

LARGEST = Settings().limits.max_message_size


def test_held_size_counts_text_html_and_embedded_files_not_stored_ones() -> None:
    content = MessageContent(
        from_="a@example.com", date="", subject="a subject the size leaves out",
        text="t" * 10, html="h" * 20,
        attachments=(EmbeddedFile("a.txt", "text/plain", "QUJD" * 5),
                     AttachmentRef("big.bin", "application/octet-stream", "0" * 64, 10**8)))
    assert content.held_size == 10 + 20 + 20
    assert MessageContent(from_="a@example.com", date="").held_size == 0


def test_at_the_default_budget_a_first_claim_takes_ten_of_the_largest_messages() -> None:
    assert HELD_CONTENT == 256 * 2**20
    assert affordable(0, LARGEST, HELD_CONTENT) == 10


def test_small_mail_is_not_held_back() -> None:
    assert affordable(0, 2_000, HELD_CONTENT) > 100_000
    assert affordable(0, 0, HELD_CONTENT) == HELD_CONTENT  # empty bodies: no limit to speak of


def test_a_full_budget_still_lets_one_through_and_what_is_left_is_shared() -> None:
    assert affordable(HELD_CONTENT, LARGEST, HELD_CONTENT) == 1
    assert affordable(HELD_CONTENT + 5, 10, HELD_CONTENT) == 1
    assert affordable(HELD_CONTENT - 3 * LARGEST, LARGEST, HELD_CONTENT) == 3
