-- migrate:up
CREATE FUNCTION order_total(p_order bigint) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(qty), 0)::bigint FROM order_items WHERE order_id = p_order;
$$;

CREATE OR REPLACE FUNCTION set_placed_at() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF NEW.placed_at IS NULL THEN
    NEW.placed_at := now();  -- stamped once; never moved
  END IF;
  RETURN NEW;
END;
$fn$;

CREATE TRIGGER orders_placed_at BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION set_placed_at();

-- migrate:down
DROP TRIGGER orders_placed_at ON orders;
DROP FUNCTION set_placed_at();
DROP FUNCTION order_total(bigint);
