SELECT trace_id, span_id, linked_trace_id, linked_span_id, message_id
FROM span_links
WHERE span_start_unix_nano >= $1 AND commit_seq <= $2
  AND trace_id IN (SELECT trace_id FROM stitch_traces);
