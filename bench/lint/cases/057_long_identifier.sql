-- expect: hazard
-- group: types
SET lock_timeout = '2s';
SET statement_timeout = '1min';
CREATE TABLE this_table_name_is_much_longer_than_postgres_allows_for_identifiers_x (id bigint PRIMARY KEY);
