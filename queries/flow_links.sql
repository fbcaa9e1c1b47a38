SELECT trace_id, span_id, linked_trace_id, linked_span_id, message_id, attributes
FROM span_links
WHERE span_start_unix_nano BETWEEN $2 AND $3
  AND trace_id IN (SELECT hex_id(trace_id) FROM flow_traces WHERE updated_unix_nano = $4 AND flow_id = $1::UUID);
