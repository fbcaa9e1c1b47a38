-- The spans of a flow. Every span of a flow starts within the flow's bounds ($2, $3), and
-- spans arrive roughly in time order, so that range lets DuckDB skip most row groups
-- before matching trace ids.
SELECT trace_id, span_id, parent_span_id, service_name, name, kind, start_unix_nano, end_unix_nano,
       status_code = 'ERROR', status_message, messaging_system, messaging_operation, destination,
       message_id, correlation_id, attempt, dead_letter_evidence,
       status_code, attributes, events, resource_attributes
FROM spans
WHERE start_unix_nano BETWEEN $2 AND $3
  AND trace_id IN (SELECT trace_id FROM flow_traces WHERE flow_id = $1)
ORDER BY start_unix_nano, span_id;
