-- The latest write time among the join hashes written since $1 (the newest run's end),
-- or $1: new writes are given later times (src/flows/stitch/join_runs.rs).
SELECT coalesce(max(updated_unix_nano), $1) FROM join_hashes WHERE updated_unix_nano >= $1;
