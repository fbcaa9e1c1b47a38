-- The traces of the flows in `found_flows` (none written before $1), with their flow.
SELECT hex_id(ft.trace_id), hex_id(ft.flow_id)
FROM flow_traces ft JOIN found_flows f ON ft.flow_id = f.flow_id AND ft.updated_unix_nano = f.updated_unix_nano
WHERE ft.updated_unix_nano >= $1;
