SELECT hex_id(flow_id), chain, start_unix_nano, duration_ms, error, hops, retries, dead_letters, queue_wait_ms, span_count, trace_count
FROM flows
WHERE start_unix_nano >= $1 AND start_unix_nano < $2 AND ($3 IS NULL OR chain = $3)
ORDER BY start_unix_nano DESC, flow_id
LIMIT $4;
