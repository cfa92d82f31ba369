-- Playbook example 3: an enum for the trade's status. A constant default is stored in the
-- catalog (PG 11+), so existing rows read 'PENDING' without a table rewrite.
-- pgshift:up
CREATE TYPE trade_status AS ENUM ('PENDING', 'ACTIVE', 'COMPLETED', 'CANCELLED');
ALTER TABLE trades ADD COLUMN status trade_status DEFAULT 'PENDING';
-- pgshift:down
ALTER TABLE trades DROP COLUMN status;
DROP TYPE trade_status;
