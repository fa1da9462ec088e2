-- v1.5: queries filter by time.
CREATE INDEX IF NOT EXISTS idx_metrics_recorded_at ON metrics (recorded_at);
