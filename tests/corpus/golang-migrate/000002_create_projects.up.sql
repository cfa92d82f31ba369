BEGIN;
CREATE TABLE projects (
    id          bigserial PRIMARY KEY,
    account_id  bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    slug        varchar(80) NOT NULL,
    archived    boolean NOT NULL DEFAULT false
);
CREATE INDEX projects_account_id_idx ON projects (account_id);
ALTER TABLE projects ADD CONSTRAINT projects_slug_per_account UNIQUE (account_id, slug);
COMMIT;
