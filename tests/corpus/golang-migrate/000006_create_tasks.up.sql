BEGIN;

CREATE TYPE task_state AS ENUM ('todo', 'doing', 'done');

CREATE TABLE tasks (
    id          bigserial PRIMARY KEY,
    project_id  bigint NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    title       text NOT NULL,
    state       task_state NOT NULL DEFAULT 'todo',
    due_on      date,
    payload     jsonb NOT NULL DEFAULT '{}'::jsonb
);

CREATE INDEX tasks_project_state_idx ON tasks (project_id, state);
CREATE INDEX tasks_payload_idx ON tasks USING gin (payload jsonb_path_ops);

END;
