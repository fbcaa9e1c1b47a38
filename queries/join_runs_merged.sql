-- Drops the runs in `merging_runs` once merged.
DELETE FROM join_hash_runs WHERE run IN (SELECT run FROM merging_runs);
DELETE FROM join_hash_run_list WHERE run IN (SELECT run FROM merging_runs);
