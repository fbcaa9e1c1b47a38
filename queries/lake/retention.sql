-- Deletes the raw rows that snapshots up to $1 added (DuckLake's snapshot_id column is
-- the snapshot that added a row).
DELETE FROM lake.spans WHERE snapshot_id <= $1;
DELETE FROM lake.span_links WHERE snapshot_id <= $1;
DELETE FROM lake.logs WHERE snapshot_id <= $1;
DELETE FROM lake.metric_points WHERE snapshot_id <= $1;
DELETE FROM lake.resources WHERE snapshot_id <= $1;
