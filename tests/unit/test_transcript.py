"""A session's transcript: its setup lines, then the current message's, rendered for each
message (the setup's text is kept between messages, and must follow what is added)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from outbox.delivery.transcript import Transcript

# ("begin", "") starts a message; (direction, text) adds a line of that direction.
Step = tuple[str, str]
steps = st.lists(st.one_of(st.just(("begin", "")),
                           st.tuples(st.sampled_from(["client", "note"]),
                                     st.text("abc xyz", min_size=0, max_size=6))),
                 max_size=25)


def expected(history: list[Step]) -> str:
    """What render() says after `history`: the lines before the first "begin", then those
    after the last one."""
    setup: list[str] = []
    message: list[str] | None = None
    for kind, text in history:
        if kind == "begin":
            message = []
            continue
        line = f"+0.000s {'C' if kind == 'client' else '*'}: {text}"
        (setup if message is None else message).append(line)
    return "\n".join(setup + (message or []))


@given(steps, st.sets(st.integers(0, 25)))
def test_each_render_shows_the_setup_then_the_current_message(
        history: list[Step], renders_at: set[int]) -> None:
    transcript = Transcript(clock=lambda: 0.0)
    for n, (kind, text) in enumerate(history):
        if n in renders_at:  # rendering in between changes nothing
            assert transcript.render() == expected(history[:n])
        if kind == "begin":
            transcript.begin_message()
        elif kind == "client":
            transcript.client(text)
        else:
            transcript.note(text)
    assert transcript.render() == expected(history)


def test_setup_lines_come_before_every_message_of_the_session() -> None:
    transcript = Transcript(clock=lambda: 0.0)
    transcript.note("connected")
    transcript.begin_message()
    transcript.client("MAIL FROM:<a@example.com>")
    first = transcript.render()
    transcript.begin_message()
    transcript.client("MAIL FROM:<b@example.com>")
    assert first == "+0.000s *: connected\n+0.000s C: MAIL FROM:<a@example.com>"
    assert transcript.render() == "+0.000s *: connected\n+0.000s C: MAIL FROM:<b@example.com>"
