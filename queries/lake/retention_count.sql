-- The raw rows that snapshots up to $1 added (what retention.sql deletes).
SELECT (SELECT count(*) FROM lake.spans WHERE snapshot_id <= $1)
     + (SELECT count(*) FROM lake.span_links WHERE snapshot_id <= $1)
     + (SELECT count(*) FROM lake.logs WHERE snapshot_id <= $1)
     + (SELECT count(*) FROM lake.metric_points WHERE snapshot_id <= $1)
     + (SELECT count(*) FROM lake.resources WHERE snapshot_id <= $1)
