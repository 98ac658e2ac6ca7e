"""The service layer: use cases over the store and the delivery edge, built once
by `Outbox.open` (service/outbox.py, the composition root)."""

from outbox.service.messages import BatchItem, Submitted, request_hash
from outbox.service.outbox import Outbox
from outbox.store.values import MessageFilter

__all__ = ["BatchItem", "MessageFilter", "Outbox", "Submitted", "request_hash"]
