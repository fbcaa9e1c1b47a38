-- Step two of a lookup: the stored flows that the join hashes in `stitch_keys` reach,
-- through a member trace, or a link, message id or correlation id of one. Rows written
-- since $1 (those not yet in a sorted run) are scanned for the hashes; older ones are
-- found by (hash, write time) from `stitch_hits` (step one, `stitch_lookup_runs.sql`),
-- whose few write times zone maps take to a row group or two. Rows are appended in
-- write order, so zone maps skip everything else.
-- The hashes alone are scanned for matches (one BIGINT column: half the cost of reading
-- flow ids along), then the few matching rows are read by row id, whose range lets zone
-- maps skip the rest. `IN (SELECT ...)` keeps the hash table on the probe keys, never on
-- the stored rows. One statement, so one snapshot: row ids stay put.
WITH trace_hits AS MATERIALIZED (
    SELECT rowid AS row FROM flow_traces
    WHERE updated_unix_nano >= $1 AND trace_key IN (SELECT key FROM stitch_keys)
    UNION ALL
    SELECT rowid FROM flow_traces
    WHERE updated_unix_nano IN (SELECT updated_unix_nano FROM stitch_hits)
      AND trace_key IN (SELECT key FROM stitch_hits)
), join_hits AS MATERIALIZED (
    SELECT rowid AS row FROM flow_join_keys
    WHERE updated_unix_nano >= $1 AND key IN (SELECT key FROM stitch_keys)
    UNION ALL
    SELECT rowid FROM flow_join_keys
    WHERE updated_unix_nano IN (SELECT updated_unix_nano FROM stitch_hits)
      AND key IN (SELECT key FROM stitch_hits)
)
SELECT trace_key, hex_id(flow_id), updated_unix_nano, flow_start_unix_nano
FROM flow_traces WHERE rowid IN (SELECT row FROM trace_hits)
UNION
SELECT key, hex_id(flow_id), updated_unix_nano, flow_start_unix_nano
FROM flow_join_keys WHERE rowid IN (SELECT row FROM join_hits);
