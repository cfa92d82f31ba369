"""Database access: connections, the advisory lock, the history ledger, catalog queries."""
