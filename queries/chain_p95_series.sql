-- p50/p95/p99 of end-to-end duration per chain and time bucket.
SELECT chain, (start_unix_nano - $1) // $3 AS bucket,
       quantile_cont(duration_ms, 0.50), quantile_cont(duration_ms, 0.95), quantile_cont(duration_ms, 0.99), count(*)
FROM flows
WHERE start_unix_nano >= $1 AND start_unix_nano < $2 AND ($4 IS NULL OR chain = $4)
GROUP BY ALL
ORDER BY chain, bucket;
