-- The checklist's full rollback.
DROP MATERIALIZED VIEW IF EXISTS metrics_hourly;
DROP INDEX IF EXISTS idx_metrics_recent;
DROP INDEX IF EXISTS idx_metrics_type_time_id;
DROP INDEX IF EXISTS idx_metrics_type_time_covering;
