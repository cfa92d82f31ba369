-- +goose Up
CREATE TABLE alerts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    raised_at timestamptz NOT NULL DEFAULT now(),
    message text NOT NULL
);

-- +goose StatementBegin
CREATE FUNCTION raise_hot_alert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.celsius > 90 THEN
        INSERT INTO alerts (device_id, message) VALUES (NEW.device_id, 'too hot: ' || NEW.celsius);
    END IF;
    RETURN NEW;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER readings_hot AFTER INSERT ON readings FOR EACH ROW EXECUTE FUNCTION raise_hot_alert();

-- +goose Down
DROP TRIGGER readings_hot ON readings;
DROP FUNCTION raise_hot_alert();
DROP TABLE alerts;
