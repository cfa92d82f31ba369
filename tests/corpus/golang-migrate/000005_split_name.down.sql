COMMENT ON COLUMN accounts.name IS NULL;
ALTER TABLE accounts DROP COLUMN last_name;
ALTER TABLE accounts DROP COLUMN first_name;
