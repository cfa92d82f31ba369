CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_due_on_idx ON tasks (due_on) WHERE state <> 'done';
