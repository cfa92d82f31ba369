-- +goose Up
ALTER TABLE devices ADD COLUMN owner_email text;
UPDATE devices SET owner_email = 'unknown@example.invalid' WHERE owner_email IS NULL;
ALTER TABLE devices ALTER COLUMN owner_email SET NOT NULL;

-- +goose Down
ALTER TABLE devices DROP COLUMN owner_email;
