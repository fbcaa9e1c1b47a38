-- The links and keys of the flows in `found_flows`, none written before $1.
SELECT hex_id(j.trace_id), j.kind, j.value
FROM flow_join_keys j JOIN found_flows f ON j.flow_id = f.flow_id AND j.updated_unix_nano = f.updated_unix_nano
WHERE j.updated_unix_nano >= $1;
