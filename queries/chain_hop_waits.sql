-- Queue wait per hop destination for one chain's flows, at p50 and p95 (estimated from a
-- uniform sample of 8,192 hops where there are more; exact below that).
SELECT destination, count(*),
       reservoir_quantile(queue_wait_ms, 0.50, 8192), reservoir_quantile(queue_wait_ms, 0.95, 8192)
FROM flow_hops
WHERE chain = $3 AND flow_start_unix_nano >= $1 AND flow_start_unix_nano < $2
  AND producer_span_id IS NOT NULL AND consumer_span_ids <> '[]'
GROUP BY destination
ORDER BY min(hop_index), destination;
