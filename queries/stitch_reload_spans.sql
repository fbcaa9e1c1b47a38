-- The spans of traces whose flow was evicted from the stitcher's memory.
SELECT trace_id, span_id, parent_span_id, service_name, name, kind, start_unix_nano, end_unix_nano,
       status_code = 'ERROR', status_message, messaging_system, messaging_operation, destination,
       message_id, correlation_id, attempt, dead_letter_evidence
FROM spans
WHERE trace_id IN (SELECT trace_id FROM stitch_traces) AND commit_seq <= ?;
