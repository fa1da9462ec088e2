DROP INDEX IF EXISTS idx_metrics_recorded_at;
