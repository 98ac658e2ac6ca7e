"""The web UI: server-rendered pages (Jinja2) with htmx for partial updates, over the
service facade exactly as the HTTP API is. `outbox serve` mounts it at /ui."""

from outbox.ui.app import create_ui

__all__ = ["create_ui"]
