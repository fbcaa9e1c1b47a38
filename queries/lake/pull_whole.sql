-- Copies every row the lake holds at snapshot $2 into the local tables, as local commit
-- $1: how a node with an empty file starts, whatever history the lake has expired.
INSERT INTO spans SELECT * REPLACE (CAST($1 AS BIGINT) AS commit_seq) FROM lake.spans AT (VERSION => $2);
INSERT INTO span_links SELECT * REPLACE (CAST($1 AS BIGINT) AS commit_seq) FROM lake.span_links AT (VERSION => $2);
INSERT INTO logs SELECT * REPLACE (CAST($1 AS BIGINT) AS commit_seq) FROM lake.logs AT (VERSION => $2);
INSERT INTO metric_points SELECT * REPLACE (CAST($1 AS BIGINT) AS commit_seq) FROM lake.metric_points AT (VERSION => $2);
INSERT INTO resources SELECT * REPLACE (CAST($1 AS BIGINT) AS commit_seq) FROM lake.resources AT (VERSION => $2);
