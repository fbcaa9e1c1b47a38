-- Stored flows that the join hashes in `stitch_keys` reach: through a member trace, or a
-- link, message id or correlation id of one. Only rows written since $1 (the join
-- window) are read; rows are appended in write order, so zone maps skip older ones.
-- Two steps: the hashes alone are scanned for matches (one BIGINT column: half the cost
-- of reading flow ids along), then the few matching rows are read by row id, whose
-- range lets zone maps skip the rest. `IN (SELECT ...)` keeps the hash table on the
-- probe keys, never on the stored rows. One statement, so one snapshot: row ids stay put.
WITH trace_hits AS MATERIALIZED (
    SELECT rowid AS row FROM flow_traces
    WHERE updated_unix_nano >= $1 AND trace_key IN (SELECT key FROM stitch_keys)
), join_hits AS MATERIALIZED (
    SELECT rowid AS row FROM flow_join_keys
    WHERE updated_unix_nano >= $1 AND key IN (SELECT key FROM stitch_keys)
)
SELECT trace_key, hex_id(flow_id), updated_unix_nano, flow_start_unix_nano
FROM flow_traces WHERE rowid IN (SELECT row FROM trace_hits)
UNION
SELECT key, hex_id(flow_id), updated_unix_nano, flow_start_unix_nano
FROM flow_join_keys WHERE rowid IN (SELECT row FROM join_hits);
