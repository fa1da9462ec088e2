DROP MATERIALIZED VIEW IF EXISTS metrics_hourly_by_hostname;
DROP INDEX CONCURRENTLY IF EXISTS idx_metrics_type_time_hostname;
