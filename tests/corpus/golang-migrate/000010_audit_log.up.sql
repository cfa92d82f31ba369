CREATE TABLE audit_log (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_name text NOT NULL,
    row_id     bigint NOT NULL,
    action     text NOT NULL CHECK (action IN ('insert', 'update', 'delete')),
    at         timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION audit_row() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    INSERT INTO audit_log (table_name, row_id, action)
    VALUES (TG_TABLE_NAME, coalesce(NEW.id, OLD.id), lower(TG_OP));
    RETURN coalesce(NEW, OLD);
END
$body$;

CREATE TRIGGER tasks_audit AFTER INSERT OR UPDATE OR DELETE ON tasks
    FOR EACH ROW EXECUTE FUNCTION audit_row();
