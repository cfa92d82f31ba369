-- expect: hazard
-- group: tx
SET lock_timeout = '2s';
SET statement_timeout = '1min';
BEGIN;
ALTER TABLE orders ADD CONSTRAINT qty_positive CHECK (qty > 0) NOT VALID;
ALTER TABLE orders VALIDATE CONSTRAINT qty_positive;
COMMIT;
