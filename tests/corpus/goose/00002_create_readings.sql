-- +goose Up
-- +goose StatementBegin
CREATE TABLE readings (
    device_id uuid NOT NULL REFERENCES devices (id),
    taken_at timestamptz NOT NULL,
    celsius numeric(5, 2) NOT NULL,
    PRIMARY KEY (device_id, taken_at)
);
-- +goose StatementEnd

-- +goose Down
DROP TABLE readings;
