-- +goose NO TRANSACTION
-- +goose Up
CREATE INDEX CONCURRENTLY IF NOT EXISTS readings_taken_at_idx ON readings (taken_at);

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS readings_taken_at_idx;
