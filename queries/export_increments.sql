-- What one roll-up adds, appended here and then added in one statement
-- (export_counter_add.sql): an upsert a row makes DuckDB take fresh transaction-local
-- blocks each time, enough to run out of memory over a few thousand series.
CREATE TEMP TABLE IF NOT EXISTS export_increments (metric VARCHAR, labels VARCHAR, value DOUBLE);
DELETE FROM export_increments;
