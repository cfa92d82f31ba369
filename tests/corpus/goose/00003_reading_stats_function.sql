-- +goose Up
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION device_mean(p_device uuid, p_since timestamptz)
RETURNS numeric LANGUAGE plpgsql STABLE AS $$
DECLARE
    result numeric;
BEGIN
    SELECT avg(celsius) INTO result
    FROM readings
    WHERE device_id = p_device AND taken_at >= p_since;
    RETURN coalesce(result, 0);
END;
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DROP FUNCTION device_mean(uuid, timestamptz);
-- +goose StatementEnd
