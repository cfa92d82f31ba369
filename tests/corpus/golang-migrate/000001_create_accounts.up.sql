BEGIN;

CREATE TABLE accounts (
    id          bigserial PRIMARY KEY,
    email       text NOT NULL,
    name        text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX accounts_email_key ON accounts (lower(email));

COMMIT;
