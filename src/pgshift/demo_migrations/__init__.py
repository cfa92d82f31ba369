"""The demo's migrations: the playbook's examples, written the safe way."""
