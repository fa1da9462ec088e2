-- v2.1.0: the contract. Every app host serves v2.1.0, which reads hostname only; the
-- collectors write hostname. host, its trigger, its index and its rollup go.
-- deploy: contract
DROP TRIGGER IF EXISTS metrics_hostname_sync ON metrics;
DROP FUNCTION IF EXISTS metrics_hostname_sync();
DROP INDEX CONCURRENTLY IF EXISTS metrics_hourly_type_host_hour;
DROP MATERIALIZED VIEW IF EXISTS metrics_hourly;
DROP INDEX CONCURRENTLY IF EXISTS idx_metrics_type_time_covering;
ALTER TABLE metrics DROP COLUMN IF EXISTS host;
