-- Per chain: volume, errors, end-to-end latency percentiles and where the time went.
SELECT chain,
       count(*)                                          AS flows,
       avg(CASE WHEN error THEN 1.0 ELSE 0.0 END)        AS error_rate,
       quantile_cont(duration_ms, 0.50)                  AS p50_ms,
       quantile_cont(duration_ms, 0.95)                  AS p95_ms,
       quantile_cont(duration_ms, 0.99)                  AS p99_ms,
       max(duration_ms)                                  AS max_ms,
       coalesce(sum(queue_wait_ms) / nullif(sum(duration_ms), 0), 0) AS queue_wait_share,
       sum(retries)::BIGINT                              AS retries,
       sum(dead_letters)::BIGINT                         AS dead_letters,
       mode(path)                                        AS path
FROM flows
WHERE start_unix_nano >= $1 AND start_unix_nano < $2
GROUP BY chain
ORDER BY p95_ms DESC, chain;
