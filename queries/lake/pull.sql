-- Copies the rows that snapshots $2..$3 added to the lake into the local tables, as
-- local commit $1.
INSERT INTO spans SELECT * REPLACE (CAST($1 AS BIGINT) AS commit_seq) FROM ducklake_table_insertions('lake', 'main', 'spans', $2, $3);
INSERT INTO span_links SELECT * REPLACE (CAST($1 AS BIGINT) AS commit_seq) FROM ducklake_table_insertions('lake', 'main', 'span_links', $2, $3);
INSERT INTO logs SELECT * REPLACE (CAST($1 AS BIGINT) AS commit_seq) FROM ducklake_table_insertions('lake', 'main', 'logs', $2, $3);
INSERT INTO metric_points SELECT * REPLACE (CAST($1 AS BIGINT) AS commit_seq) FROM ducklake_table_insertions('lake', 'main', 'metric_points', $2, $3);
INSERT INTO resources SELECT * REPLACE (CAST($1 AS BIGINT) AS commit_seq) FROM ducklake_table_insertions('lake', 'main', 'resources', $2, $3);
