-- Keep updated_at current on every write.
CREATE OR REPLACE FUNCTION touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- a semicolon; inside the body must not split the statement
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

ALTER TABLE accounts ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

CREATE TRIGGER accounts_touch BEFORE UPDATE ON accounts
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
