"""`Store` in SQLAlchemy Core, shared by both backends.

`store.py` holds the verbs, each one transaction run by the backend's
runner; `queries.py` holds their SQL, as plain functions of one
`Connection`. `SqliteStore` and `PostgresStore` add only what differs: the
runners, the claim statement and the wake-up.
"""

from outbox.store.sql.queries import claim_values, due_filter, insert_messages
from outbox.store.sql.store import Body, P, SqlStore, T, translate_errors

__all__ = ["Body", "P", "SqlStore", "T", "claim_values", "due_filter", "insert_messages",
           "translate_errors"]
