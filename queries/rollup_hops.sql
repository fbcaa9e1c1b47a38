-- Hops with a producer and a consumer of flows that settled in commits ($1, $2]; a retry
-- destination's wait is retry delay, not queue wait.
SELECT h.destination, h.queue_wait_ms
FROM flow_hops h
WHERE h.producer_span_id IS NOT NULL AND h.consumer_span_ids <> '[]' AND h.destination IS NOT NULL
  AND h.queue_wait_ms IS NOT NULL AND NOT coalesce(h.retry, false)
  AND h.flow_id IN (SELECT flow_id FROM flows WHERE last_commit_seq > $1 AND last_commit_seq <= $2);
