-- Playbook example 1: audit trail columns. timestamptz rather than the playbook's timestamp,
-- and now() is stable per statement, so PG 11+ adds these columns without rewriting the table.
-- pgshift:up
ALTER TABLE users ADD COLUMN created_at timestamptz DEFAULT now();
ALTER TABLE users ADD COLUMN updated_at timestamptz DEFAULT now();
ALTER TABLE users ADD COLUMN deleted_at timestamptz;
-- pgshift:down
ALTER TABLE users DROP COLUMN deleted_at;
ALTER TABLE users DROP COLUMN updated_at;
ALTER TABLE users DROP COLUMN created_at;
