-- Flows containing a span id, message id or correlation id equal to $1 (trace ids are
-- looked up first, by search_by_trace_id.sql).
SELECT hex_id(f.flow_id), f.chain, f.start_unix_nano, f.duration_ms
FROM flows f
WHERE f.flow_id IN (
    SELECT ft.flow_id FROM spans s JOIN flow_traces ft ON ft.trace_id = TRY_CAST(s.trace_id AS UUID)
    WHERE s.span_id = lower($1) OR s.message_id = $1 OR s.correlation_id = $1
    UNION
    SELECT ft.flow_id FROM span_links l JOIN flow_traces ft ON ft.trace_id = TRY_CAST(l.trace_id AS UUID)
    WHERE l.message_id = $1
    UNION
    SELECT ft.flow_id FROM logs g JOIN flow_traces ft ON ft.trace_id = TRY_CAST(g.trace_id AS UUID)
    WHERE g.correlation_id = $1 OR g.message_id = $1
)
ORDER BY f.start_unix_nano DESC
LIMIT 100;
