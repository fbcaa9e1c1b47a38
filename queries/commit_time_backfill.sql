-- Rows committed before commit times were recorded count as received now ($2): gives the
-- latest existing commit ($1) a time unless one is recorded.
INSERT INTO commits (commit_seq, committed_unix_nano) SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM commits WHERE commit_seq >= $1);
