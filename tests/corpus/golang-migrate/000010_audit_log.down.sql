DROP TRIGGER tasks_audit ON tasks;
DROP FUNCTION audit_row();
DROP TABLE audit_log;
