-- Rows received up to commit $1 (see retention_cutoff_seq.sql).
DELETE FROM lake_pulls WHERE commit_seq <= $1;
