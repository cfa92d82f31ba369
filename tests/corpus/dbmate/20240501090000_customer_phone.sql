-- migrate:up
ALTER TABLE customers ADD COLUMN phone text;
ALTER TABLE customers ADD COLUMN phone_verified boolean NOT NULL DEFAULT false;

    -- migrate:down
ALTER TABLE customers DROP COLUMN phone_verified;
ALTER TABLE customers DROP COLUMN phone;
