SELECT trace_id, span_id, parent_span_id, service_name, name, kind, start_unix_nano, end_unix_nano,
       status_code = 'ERROR', status_message, messaging_system, messaging_operation, destination,
       message_id, correlation_id, attempt, dead_letter_evidence,
       status_code, attributes, events, resource_attributes
FROM spans
WHERE trace_id IN (SELECT trace_id FROM flow_traces WHERE flow_id = $1)
ORDER BY start_unix_nano, span_id;
