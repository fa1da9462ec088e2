-- v2.0.0-perf: covering indexes for the history endpoint and an hourly rollup.
-- Each CREATE INDEX CONCURRENTLY must run on its own, outside any transaction.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_metrics_type_time_covering
    ON metrics (type, recorded_at DESC) INCLUDE (host, value);

CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_metrics_type_time_id
    ON metrics (type, recorded_at DESC, id DESC);

CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_metrics_recent
    ON metrics (recorded_at DESC) INCLUDE (type, value);

CREATE MATERIALIZED VIEW IF NOT EXISTS metrics_hourly AS
    SELECT type, host, date_trunc('hour', recorded_at) AS hour,
           avg(value) AS avg_value, min(value) AS min_value, max(value) AS max_value,
           count(*) AS samples
    FROM metrics
    GROUP BY type, host, date_trunc('hour', recorded_at);

-- REFRESH MATERIALIZED VIEW CONCURRENTLY needs a unique index.
CREATE UNIQUE INDEX IF NOT EXISTS metrics_hourly_type_host_hour ON metrics_hourly (type, host, hour);
