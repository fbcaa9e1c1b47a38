CREATE TEMP TABLE IF NOT EXISTS merging_runs (run BIGINT);
DELETE FROM merging_runs;
