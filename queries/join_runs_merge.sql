-- One slice of a merge into run $1: the hashes in [$2, $3] of the runs in `merging_runs`
-- still within the join window (written since $4), sorted. Slices are taken in order of
-- hash, so the new run is sorted whole; zone maps take each slice to its part of each run.
INSERT INTO join_hash_runs
SELECT $1, key, updated_unix_nano FROM join_hash_runs
WHERE run IN (SELECT run FROM merging_runs) AND key >= $2 AND key <= $3 AND updated_unix_nano >= $4
ORDER BY key;
