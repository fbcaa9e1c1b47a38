-- The flow containing trace id $1 (join hash $2): the trace's row in flow_traces names
-- the flow and its write time, which finds the flow's row through zone maps.
SELECT hex_id(f.flow_id), f.chain, f.start_unix_nano, f.duration_ms
FROM flows f
JOIN (SELECT flow_id, updated_unix_nano FROM flow_traces WHERE trace_key = $2 AND trace_id = $1::UUID) t
  USING (flow_id, updated_unix_nano)
ORDER BY f.start_unix_nano DESC
LIMIT 100;
