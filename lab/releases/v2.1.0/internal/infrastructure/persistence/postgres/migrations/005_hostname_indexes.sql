-- v2.1.0: expand step 2 of 2, once hostname is filled: the covering index and the hourly
-- rollup for hostname, beside those for host (v2.0.0-perf reads them until the contract).
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_metrics_type_time_hostname
    ON metrics (type, recorded_at DESC) INCLUDE (hostname, value);

CREATE MATERIALIZED VIEW IF NOT EXISTS metrics_hourly_by_hostname AS
    SELECT type, hostname, date_trunc('hour', recorded_at) AS hour,
           avg(value) AS avg_value, min(value) AS min_value, max(value) AS max_value,
           count(*) AS samples
    FROM metrics
    GROUP BY type, hostname, date_trunc('hour', recorded_at);

-- REFRESH MATERIALIZED VIEW CONCURRENTLY needs a unique index.
CREATE UNIQUE INDEX IF NOT EXISTS metrics_hourly_by_hostname_key
    ON metrics_hourly_by_hostname (type, hostname, hour);
