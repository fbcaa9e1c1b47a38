-- One chain's flows in the range ($1, $2), read from `flows` once for the chain page:
-- 'summary' (how many, end-to-end p50/p95/p99 and max, p50/p95 of service time, queue
-- wait and retry delay), 'series' (p50/p95/p99 and count per time bucket of $4 ns), and
-- 'histogram' (flows per power-of-two duration bucket b: durations in (2^(b-1), 2^b] ms,
-- bucket 0 everything up to 1 ms). Percentiles are sampled above 8,192 flows (a bucket),
-- as in chains.sql.
WITH f AS MATERIALIZED (
    SELECT (start_unix_nano - $1) // $4 AS bucket, duration_ms, service_ms, queue_wait_ms, retry_delay_ms
    FROM flows
    WHERE chain = $3 AND start_unix_nano >= $1 AND start_unix_nano < $2
)
SELECT 'summary' AS part, NULL::BIGINT AS bucket, n, total[1], total[2], total[3], max_ms,
       service[1], service[2], queue[1], queue[2], retry[1], retry[2]
FROM (
    SELECT count(*) AS n,
           reservoir_quantile(duration_ms, [0.5, 0.95, 0.99], 8192) AS total,
           max(duration_ms) AS max_ms,
           reservoir_quantile(service_ms, [0.5, 0.95], 8192) AS service,
           reservoir_quantile(queue_wait_ms, [0.5, 0.95], 8192) AS queue,
           reservoir_quantile(retry_delay_ms, [0.5, 0.95], 8192) AS retry
    FROM f
)
UNION ALL
SELECT 'series', bucket, n, q[1], q[2], q[3], NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM (
    SELECT bucket, count(*) AS n, reservoir_quantile(duration_ms, [0.50, 0.95, 0.99], 8192) AS q
    FROM f GROUP BY bucket
)
UNION ALL
SELECT 'histogram', CASE WHEN duration_ms <= 1 THEN 0 ELSE ceil(log2(duration_ms))::BIGINT END, count(*),
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM f GROUP BY 2
ORDER BY part, bucket;
