ALTER TABLE accounts ADD COLUMN first_name text;
ALTER TABLE accounts ADD COLUMN last_name text;

BEGIN;
UPDATE accounts SET first_name = split_part(name, ' ', 1),
                    last_name  = nullif(substr(name, length(split_part(name, ' ', 1)) + 2), '');
COMMIT;

COMMENT ON COLUMN accounts.name IS 'deprecated: use first_name and last_name';
