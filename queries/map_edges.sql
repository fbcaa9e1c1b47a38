-- The flow map's edge sums over slots starting in [$1, $2), of one chain when $3 is given
-- (see migration 014 and src/flows/edges.rs): the kinds drawn, and `entry`.
SELECT kind, source, target, system, latency_bucket,
       sum(n)::BIGINT, sum(errors)::BIGINT, sum(retries)::BIGINT, sum(dead_letters)::BIGINT
FROM flow_edge_slots
WHERE slot_unix_nano >= $1 AND slot_unix_nano < $2 AND ($3 IS NULL OR chain = $3)
  AND kind IN ('call', 'publish', 'consume', 'entry')
GROUP BY ALL
HAVING sum(n) <> 0 OR sum(errors) <> 0 OR sum(retries) <> 0 OR sum(dead_letters) <> 0;
