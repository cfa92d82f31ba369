BEGIN;
DROP INDEX accounts_search_idx;
ALTER TABLE accounts DROP COLUMN search;
COMMIT;
