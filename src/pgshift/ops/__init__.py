"""Zero-downtime operations: expand/contract/abort phases, sync triggers, versioned view schemas,
and the batched backfill engine."""
