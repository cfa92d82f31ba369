-- The playbook's example app (TrAIder API): users and their trades.
-- pgshift:up
CREATE TABLE users (
    id text PRIMARY KEY,
    email text NOT NULL UNIQUE
);
CREATE TABLE trades (
    id text PRIMARY KEY,
    user_id text NOT NULL,
    symbol text NOT NULL,
    amount numeric(18, 4) NOT NULL
);
INSERT INTO users (id, email)
SELECT 'u' || g, 'user' || g || '@example.com' FROM generate_series(1, 500) AS g;
INSERT INTO trades (id, user_id, symbol, amount)
SELECT 't' || g, 'u' || (1 + g % 500), (ARRAY['BTC', 'ETH', 'SOL'])[1 + g % 3], (g % 1000) / 7.0
FROM generate_series(1, 5000) AS g;
-- pgshift:down
DROP TABLE trades;
DROP TABLE users;
