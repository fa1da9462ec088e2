-- v2.1.0: the contract. Every app host serves v2.1.0, which reads hostname only; the
-- collectors write hostname. host, its index, its rollup and its trigger go.
-- deploy: contract
DROP INDEX CONCURRENTLY IF EXISTS idx_metrics_type_time_covering;
DROP INDEX CONCURRENTLY IF EXISTS metrics_hourly_type_host_hour;

-- One transaction: no writer may insert a row between the trigger's end and host's.
DROP MATERIALIZED VIEW IF EXISTS metrics_hourly;
DROP TRIGGER IF EXISTS metrics_hostname_sync ON metrics;
DROP FUNCTION IF EXISTS metrics_hostname_sync();
ALTER TABLE metrics DROP COLUMN IF EXISTS host;
