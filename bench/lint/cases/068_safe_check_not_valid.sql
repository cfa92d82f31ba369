-- expect: safe
-- group: lock
SET lock_timeout = '2s';
SET statement_timeout = '1min';
ALTER TABLE orders ADD CONSTRAINT qty_positive CHECK (qty > 0) NOT VALID;
