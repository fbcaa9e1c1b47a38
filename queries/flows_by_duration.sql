-- The slowest flows of a range (of chain $3), at most $4; $5, when given, is a duration
-- they all reach (from the chain sums: src/flows/queries/chains.rs), so that only the
-- flows above it are read whole.
SELECT hex_id(flow_id), chain, start_unix_nano, duration_ms, error, hops, retries, dead_letters, queue_wait_ms, span_count, trace_count
FROM flows
WHERE start_unix_nano >= $1 AND start_unix_nano < $2 AND ($3 IS NULL OR chain = $3)
  AND ($5 IS NULL OR duration_ms >= $5)
ORDER BY duration_ms DESC, flow_id
LIMIT $4;
