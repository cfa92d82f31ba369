-- migrate:up
CREATE TABLE order_items (
    order_id bigint NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line_no int NOT NULL,
    sku text NOT NULL,
    qty int NOT NULL CHECK (qty > 0),
    PRIMARY KEY (order_id, line_no)
);

-- migrate:down
DROP TABLE order_items;
