CREATE TABLE plans (
    code   text PRIMARY KEY,
    title  text NOT NULL,
    cents  integer NOT NULL CHECK (cents >= 0)
);

INSERT INTO plans (code, title, cents) VALUES
    ('free', 'Free', 0),
    ('team', 'Team; billed monthly', 1900),
    ('org', 'Organisation', 9900);

ALTER TABLE accounts ADD COLUMN plan text NOT NULL DEFAULT 'free' REFERENCES plans (code);
