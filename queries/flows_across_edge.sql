-- The slowest flows in a range that crossed an edge: their stored cells (flows.edges)
-- contain $3, the edge's kind, source and target side by side (src/flows/edges.rs).
SELECT hex_id(flow_id), chain, start_unix_nano, duration_ms, error, hops, retries, dead_letters, queue_wait_ms, span_count, trace_count
FROM flows
WHERE start_unix_nano >= $1 AND start_unix_nano < $2 AND contains(edges, $3)
ORDER BY duration_ms DESC, flow_id
LIMIT $4;
