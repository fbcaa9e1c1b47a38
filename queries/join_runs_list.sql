-- The sorted runs of join hashes (src/flows/stitch/join_runs.rs), oldest first.
SELECT run, hashes, oldest_unix_nano, newest_unix_nano, through_unix_nano
FROM join_hash_run_list ORDER BY through_unix_nano, run;
