-- Step one of a lookup: the hashes in `stitch_keys` found in the sorted runs, written
-- since $1 (the join window), with their write time (src/flows/stitch/join_runs.rs). For a few
-- probes DuckDB pushes them into the scan as a list its zone maps check, so each probe
-- reads one row group of each run.
INSERT INTO stitch_hits
SELECT key, updated_unix_nano FROM join_hash_runs
WHERE updated_unix_nano >= $1 AND key IN (SELECT key FROM stitch_keys);
