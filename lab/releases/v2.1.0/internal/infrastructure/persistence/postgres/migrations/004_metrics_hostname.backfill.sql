-- deploy: backfill metrics.id
UPDATE metrics SET hostname = host WHERE id >= :lo AND id < :hi AND hostname IS NULL
