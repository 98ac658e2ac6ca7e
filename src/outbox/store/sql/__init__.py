"""The stores in SQLAlchemy Core, shared by both backends.

    runner.py        `Runner`: one typed transaction per call; `translate_errors`
    store.py         `SqlStore`, the root: composes the facets; ping, migrate, describe
    messages.py      `SqlMessages` (the queue), its SQL in queries.py
    relay_auth.py    `SqlRelayAuth`
    keys.py          `SqlKeys`: API keys and signing keys
    alerts.py        `SqlAlerts`
    address_book.py  `SqlContacts`, its SQL in contacts.py and groups.py
    blob_index.py    `SqlBlobIndex`
    wakeup.py        `Wakeup`: in-process wake-ups for idle workers

Each facet class implements its protocol in `store.base` over the runner it
is given; the SQL is plain functions of one `Connection`. A backend
(`store.sqlite`, `store.postgres`) supplies only what differs: the runner,
the claim statement, the wake-up, group commit and the migration lock.
"""
