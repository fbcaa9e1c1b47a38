-- The flow containing trace id $1: a lookup in flow_traces (one row per trace), far
-- smaller than the span columns the general search scans.
SELECT f.flow_id, f.chain, f.start_unix_nano, f.duration_ms
FROM flows f
WHERE f.flow_id IN (SELECT flow_id FROM flow_traces WHERE trace_id = lower($1))
ORDER BY f.start_unix_nano DESC
LIMIT 100;
