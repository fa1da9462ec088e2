-- v2.1.0: metrics.host becomes metrics.hostname, expand step 1 of 2.
-- The collectors write metrics without this deploy, some still with host only, some already
-- with hostname only: until the contract (006), a trigger keeps both columns filled.
-- The rows written before it are filled by 004_metrics_hostname.backfill.sql, in batches.
ALTER TABLE metrics ADD COLUMN IF NOT EXISTS hostname text;

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
