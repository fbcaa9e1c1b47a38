-- The latest write time among the join hashes written since $1 (the newest run's end),
-- or $1: new writes are given later times (src/flows/join_runs.rs).
SELECT greatest(
    $1,
    coalesce((SELECT max(updated_unix_nano) FROM flow_traces WHERE updated_unix_nano >= $1), $1),
    coalesce((SELECT max(updated_unix_nano) FROM flow_join_keys WHERE updated_unix_nano >= $1), $1)
);
