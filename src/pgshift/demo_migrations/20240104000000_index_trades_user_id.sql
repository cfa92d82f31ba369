-- Playbook example 2, step 2: index the referencing column first. CONCURRENTLY keeps writes
-- flowing; it cannot run in a transaction, and pgshift runs it on its own.
-- pgshift:no-transaction
-- pgshift:up
CREATE INDEX CONCURRENTLY idx_trades_user_id ON trades (user_id);
-- pgshift:down
DROP INDEX CONCURRENTLY idx_trades_user_id;
