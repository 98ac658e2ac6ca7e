"""Storage behind one narrow, domain-verb interface (`store.base.Store`)."""
