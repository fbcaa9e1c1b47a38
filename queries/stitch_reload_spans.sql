-- The spans of traces whose flow was evicted from the stitcher's memory. None starts
-- before $1 (their flows' earliest start), so DuckDB's zone maps skip older row groups.
SELECT trace_id, span_id, parent_span_id, service_name, name, kind, start_unix_nano, end_unix_nano,
       status_code = 'ERROR', status_message, messaging_system, messaging_operation, destination,
       message_id, correlation_id, attempt, dead_letter_evidence
FROM spans
WHERE start_unix_nano >= $1 AND commit_seq <= $2
  AND trace_id IN (SELECT trace_id FROM stitch_traces);
