-- p50/p95/p99 of end-to-end duration per chain and time bucket (sampled above 8,192
-- flows a bucket, as in chains.sql).
SELECT chain, bucket, q[1], q[2], q[3], n
FROM (
    SELECT chain, (start_unix_nano - $1) // $3 AS bucket,
           reservoir_quantile(duration_ms, [0.50, 0.95, 0.99], 8192) AS q, count(*) AS n
    FROM flows
    WHERE start_unix_nano >= $1 AND start_unix_nano < $2
    GROUP BY ALL
)
ORDER BY chain, bucket;
