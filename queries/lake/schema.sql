-- The raw signals every receiver appends to, with the columns of the local tables (made
-- from them, so the two cannot drift apart). `commit_seq` there is the receiver's own
-- commit number; the stitcher numbers rows again as it copies them into its file.
CREATE TABLE IF NOT EXISTS lake.spans AS SELECT * FROM spans LIMIT 0;
CREATE TABLE IF NOT EXISTS lake.span_links AS SELECT * FROM span_links LIMIT 0;
CREATE TABLE IF NOT EXISTS lake.logs AS SELECT * FROM logs LIMIT 0;
CREATE TABLE IF NOT EXISTS lake.metric_points AS SELECT * FROM metric_points LIMIT 0;
CREATE TABLE IF NOT EXISTS lake.resources AS SELECT * FROM resources LIMIT 0;
