-- expect: hazard
-- group: lock
SET lock_timeout = '2s';
SET statement_timeout = '1min';
ALTER TABLE measurements ATTACH PARTITION measurements_2024 FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
