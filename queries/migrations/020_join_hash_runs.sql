-- Runs of join hashes sorted by hash (src/flows/stitch/join_runs.rs). The stitcher's lookup of
-- a late span's trace, link, message id or correlation id read every hash written in
-- the join window (0.37 s a lookup at 39 M spans); in a run sorted by hash, zone maps
-- take each probe to one row group. Each run is the hashes of `flow_traces.trace_key`
-- and `flow_join_keys.key` written in [its oldest write, `through_unix_nano`), with the
-- write time that finds their rows again. Rows written since the newest run's
-- `through_unix_nano` are read from the flow tables as before. A flow rewritten since
-- leaves its old hashes here; they find no row and cost nothing but space until their
-- run leaves the window.
CREATE TABLE join_hash_runs (
    run               BIGINT NOT NULL,
    key               BIGINT NOT NULL,
    updated_unix_nano BIGINT NOT NULL
);

-- One row per run in `join_hash_runs`.
CREATE TABLE join_hash_run_list (
    run               BIGINT NOT NULL,
    hashes            BIGINT NOT NULL,
    oldest_unix_nano  BIGINT NOT NULL,  -- its hashes' write times
    newest_unix_nano  BIGINT NOT NULL,
    through_unix_nano BIGINT NOT NULL   -- every hash written before this is in a run
);
