SELECT trace_id, span_id, linked_trace_id, linked_span_id, message_id
FROM span_links
WHERE commit_seq > ? AND commit_seq <= ?;
