"""The service layer: use cases over the store and the delivery edge, built once
by `Outbox.open` (service/outbox.py, the composition root)."""

from outbox.service.messages import BatchItem, Submitted
from outbox.service.outbox import Outbox
from outbox.service.request_hash import request_hash
from outbox.store.values import MessageFilter

__all__ = ["BatchItem", "MessageFilter", "Outbox", "Submitted", "request_hash"]
