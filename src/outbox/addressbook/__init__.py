"""The address book: contacts, groups, aliases, import, dedupe, directory sync."""
