-- expect: hazard
-- group: lock
SET lock_timeout = '2s';
SET statement_timeout = '1min';
CREATE TRIGGER orders_audit AFTER UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION audit();
