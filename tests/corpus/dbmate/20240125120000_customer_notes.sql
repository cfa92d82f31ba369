-- migrate:up
CREATE TABLE customer_notes (
    id bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    note text NOT NULL
);

-- migrate:down
DROP TABLE customer_notes CASCADE WHERE;
