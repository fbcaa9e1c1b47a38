-- Lists run $1 as written: its hashes and their write times ($2 for an empty run), and
-- $3, the write time below which every hash is in a run.
INSERT INTO join_hash_run_list
SELECT $1, count(*), coalesce(min(updated_unix_nano), $2), coalesce(max(updated_unix_nano), $2), $3
FROM join_hash_runs WHERE run = $1;
