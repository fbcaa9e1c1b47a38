-- The chain pages' sums (src/flows/chain_sums.rs) over slots starting in [$1, $2): per
-- chain, kind, name and latency bucket; `flow` cells (name: the flow's path) also per
-- part of $3 ns from $1, for the series. Of chain $4 when given, with its queue waits per
-- destination (`consume` cells, name: the destination). With $5 (a map node,
-- `service:NAME`), only chains whose flows in the range touch that service.
WITH through AS (
    SELECT chain FROM flow_edge_slots
    WHERE $5 IS NOT NULL AND slot_unix_nano >= $1 AND slot_unix_nano < $2
      AND kind IN ('call', 'publish', 'consume', 'entry') AND (source = $5 OR target = $5)
    GROUP BY chain
    HAVING sum(n) > 0
)
SELECT chain, kind,
       CASE WHEN kind = 'consume' THEN source ELSE target END,
       CASE WHEN kind = 'flow' THEN (slot_unix_nano - $1) // $3 END,
       latency_bucket,
       sum(n)::BIGINT, sum(errors)::BIGINT, sum(retries)::BIGINT, sum(dead_letters)::BIGINT
FROM flow_edge_slots
WHERE slot_unix_nano >= $1 AND slot_unix_nano < $2
  AND ($4 IS NULL OR chain = $4)
  AND (kind IN ('flow', 'service_time', 'queue_wait', 'retry_delay')
       OR ($4 IS NOT NULL AND kind = 'consume' AND latency_bucket IS NOT NULL))
  AND ($5 IS NULL OR chain IN (SELECT chain FROM through))
GROUP BY ALL
HAVING sum(n) <> 0;
