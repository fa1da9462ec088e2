-- host back with its values (from hostname), then what read it: the schema of 005, data
-- included. The trigger first, so that rows written meanwhile get host too.
ALTER TABLE metrics ADD COLUMN IF NOT EXISTS host text;

CREATE OR REPLACE FUNCTION metrics_hostname_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.host IS DISTINCT FROM OLD.host THEN
        NEW.hostname := NEW.host;
    END IF;
    NEW.hostname := coalesce(NEW.hostname, NEW.host);
    NEW.host := coalesce(NEW.host, NEW.hostname);
    RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS metrics_hostname_sync ON metrics;
CREATE TRIGGER metrics_hostname_sync BEFORE INSERT OR UPDATE ON metrics
    FOR EACH ROW EXECUTE FUNCTION metrics_hostname_sync();

UPDATE metrics SET host = hostname WHERE host IS NULL;

-- NOT NULL without scanning the table under an ACCESS EXCLUSIVE lock (which would stall every
-- query of the serving release): a CHECK validated under a lock that lets reads and writes
-- through, which SET NOT NULL then trusts.
ALTER TABLE metrics ADD CONSTRAINT metrics_host_not_null CHECK (host IS NOT NULL) NOT VALID;
ALTER TABLE metrics VALIDATE CONSTRAINT metrics_host_not_null;
ALTER TABLE metrics ALTER COLUMN host SET NOT NULL;
ALTER TABLE metrics DROP CONSTRAINT metrics_host_not_null;

CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_metrics_type_time_covering
    ON metrics (type, recorded_at DESC) INCLUDE (host, value);

CREATE MATERIALIZED VIEW IF NOT EXISTS metrics_hourly AS
    SELECT type, host, date_trunc('hour', recorded_at) AS hour,
           avg(value) AS avg_value, min(value) AS min_value, max(value) AS max_value,
           count(*) AS samples
    FROM metrics
    GROUP BY type, host, date_trunc('hour', recorded_at);
CREATE UNIQUE INDEX IF NOT EXISTS metrics_hourly_type_host_hour ON metrics_hourly (type, host, hour);
