-- +goose Up
CREATE TABLE firmware (
    version text PRIMARY KEY,
    released_on date NOT NULL
);
ALTER TABLE devices ADD COLUMN firmware_version text REFERENCES firmware (version);
