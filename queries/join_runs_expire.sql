-- Drops the runs whose every hash was written before $1, the start of the join window.
DELETE FROM join_hash_runs WHERE run IN (SELECT run FROM join_hash_run_list WHERE newest_unix_nano < $1);
DELETE FROM join_hash_run_list WHERE newest_unix_nano < $1;
