-- A flow by its id, or by any trace id it contains (flow ids change when flows merge).
SELECT flow_id, updated_unix_nano, start_unix_nano, end_unix_nano, coalesce(truncated, false)
FROM flows
WHERE flow_id = (SELECT flow_id FROM flow_traces WHERE trace_id = $1 LIMIT 1)
LIMIT 1;
