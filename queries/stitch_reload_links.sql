SELECT trace_id, span_id, linked_trace_id, linked_span_id, message_id
FROM span_links
WHERE trace_id IN (SELECT trace_id FROM stitch_traces) AND commit_seq <= ?;
