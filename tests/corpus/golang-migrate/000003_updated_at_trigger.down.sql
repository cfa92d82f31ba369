DROP TRIGGER IF EXISTS accounts_touch ON accounts;
ALTER TABLE accounts DROP COLUMN IF EXISTS updated_at;
DROP FUNCTION IF EXISTS touch_updated_at();
