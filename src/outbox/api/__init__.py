"""The versioned HTTP API (/v1), a thin layer over `service.Outbox`."""
