BEGIN;
ALTER TABLE accounts ADD COLUMN search tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', coalesce(name, '') || ' ' || email)) STORED;
CREATE INDEX accounts_search_idx ON accounts USING gin (search);
COMMIT;
