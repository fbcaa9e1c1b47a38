SELECT trace_id, span_id, parent_span_id, service_name, name, kind, start_unix_nano, end_unix_nano,
       status_code = 'ERROR', status_message, messaging_system, messaging_operation, destination,
       message_id, correlation_id, attempt, dead_letter_evidence
FROM spans
WHERE commit_seq > ? AND commit_seq <= ?;
