"""Storage behind narrow, domain-verb protocols (`store.base`), one per aggregate,
over values (`store.values`); `store.factory.open_store(url)` opens one."""
