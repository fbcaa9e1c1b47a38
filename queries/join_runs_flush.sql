-- A new run $1: the join hashes written in [$2, $3), sorted by hash. Rows are stored in
-- the order inserted, so the run's row groups each hold a narrow range of hashes.
INSERT INTO join_hash_runs
SELECT $1, key, updated_unix_nano FROM join_hashes
WHERE updated_unix_nano >= $2 AND updated_unix_nano < $3
ORDER BY key;
