"""What a message looks like from outside: the bodies the HTTP API returns and the CLI
prints with --json, and the functions that build them from domain values.

Every entry point renders through here, so the API's JSON and the CLI's --json are the
same bytes. Request bodies and API-only envelopes stay in `outbox.api.schemas`.
"""
