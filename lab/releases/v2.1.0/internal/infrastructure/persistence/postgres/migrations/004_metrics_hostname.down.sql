DROP TRIGGER IF EXISTS metrics_hostname_sync ON metrics;
DROP FUNCTION IF EXISTS metrics_hostname_sync();
ALTER TABLE metrics DROP COLUMN IF EXISTS hostname;
