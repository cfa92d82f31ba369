-- migrate:up
CREATE TYPE order_status AS ENUM ('cart', 'placed', 'shipped', 'cancelled');
ALTER TABLE orders ADD COLUMN status order_status NOT NULL DEFAULT 'cart';

-- migrate:down
ALTER TABLE orders DROP COLUMN status;
DROP TYPE order_status;
