CREATE TABLE task_comments (
    id        bigserial PRIMARY KEY,
    task_id   bigint NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    author_id bigint REFERENCES accounts (id) ON DELETE SET NULL,
    body      text NOT NULL,
    posted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX task_comments_task_id_idx ON task_comments (task_id);
