-- +goose Up
CREATE TABLE device_labels (
    device_id uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    label text NOT NULL,
    UNIQUE (device_id, label)
);

-- +goose Down
DROP TABLE device_labels;
