"""Plan what to run, run it with lock-safe retries, and record it: load → plan → execute → record."""
