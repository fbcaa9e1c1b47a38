-- Stored flows that the join hashes in `stitch_keys` reach: through a member trace, or a
-- link, message id or correlation id of one. Only rows written since $1 (the join
-- window) are read; rows are appended in write order, so zone maps skip older ones.
SELECT k.key, ft.flow_id, ft.updated_unix_nano, ft.flow_start_unix_nano
FROM flow_traces ft JOIN stitch_keys k ON ft.trace_key = k.key
WHERE ft.updated_unix_nano >= $1
UNION
SELECT k.key, j.flow_id, j.updated_unix_nano, j.flow_start_unix_nano
FROM flow_join_keys j JOIN stitch_keys k ON j.key = k.key
WHERE j.updated_unix_nano >= $1;
