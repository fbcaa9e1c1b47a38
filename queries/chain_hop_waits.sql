-- Queue wait per hop destination for one chain's flows, at p50 and p95.
SELECT h.destination, count(*), quantile_cont(h.queue_wait_ms, 0.50), quantile_cont(h.queue_wait_ms, 0.95)
FROM flow_hops h JOIN flows f ON f.flow_id = h.flow_id
WHERE f.chain = $3 AND f.start_unix_nano >= $1 AND f.start_unix_nano < $2
  AND h.producer_span_id IS NOT NULL AND h.consumer_span_ids <> '[]'
GROUP BY h.destination
ORDER BY min(h.hop_index), h.destination;
