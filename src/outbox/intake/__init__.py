"""Bounce intake: the SMTP listener for the bounce domain (`intake.smtp`) and the IMAP
poller for operators who only have a mailbox (`intake.imap`). Both hand each message
to `service.bounces.Bounces.receive`."""

from outbox.intake.smtp import BounceListener, bind_bounce_socket

__all__ = ["BounceListener", "bind_bounce_socket"]
