-- migrate:up transaction:false
ALTER TYPE order_status ADD VALUE IF NOT EXISTS 'refunded' AFTER 'shipped';

-- migrate:down
-- PostgreSQL cannot remove an enum value; rolling back leaves 'refunded' in place.
