-- +goose Up
CREATE TABLE devices (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    serial text NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX devices_serial_key ON devices (serial);

-- +goose Down
DROP TABLE devices;
