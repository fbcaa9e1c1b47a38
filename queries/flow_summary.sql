-- A flow by its id, or by any trace id it contains (flow ids change when flows merge):
-- $1 the id, $2 its join hash. The trace's row names the flow and when it was written,
-- which finds the flow's row through zone maps (no index; migration 015). A batch's
-- trace is in every flow it carries a message of: the flow whose id it is comes first,
-- then the latest.
SELECT hex_id(f.flow_id), f.updated_unix_nano, f.start_unix_nano, f.end_unix_nano, coalesce(f.truncated, false)
FROM flows f
JOIN (SELECT flow_id, updated_unix_nano FROM flow_traces WHERE trace_key = $2 AND trace_id = $1::UUID) t
  USING (flow_id, updated_unix_nano)
ORDER BY (f.flow_id = $1::UUID) DESC, f.start_unix_nano DESC
LIMIT 1;
