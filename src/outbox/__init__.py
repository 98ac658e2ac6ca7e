"""Outbox: outbound email that gets delivered."""

__version__ = "0.1.0"
