-- One chain's flows in the range ($1, $2): how many, end-to-end percentiles, and the
-- percentiles of each part of the time (service, queue wait, retry delay); sampled above
-- 8,192 flows, as in chains.sql.
SELECT n, total[1], total[2], total[3], max_ms, service[1], service[2], queue[1], queue[2], retry[1], retry[2]
FROM (
    SELECT count(*) AS n,
           reservoir_quantile(duration_ms, [0.5, 0.95, 0.99], 8192) AS total,
           max(duration_ms) AS max_ms,
           reservoir_quantile(service_ms, [0.5, 0.95], 8192) AS service,
           reservoir_quantile(queue_wait_ms, [0.5, 0.95], 8192) AS queue,
           reservoir_quantile(retry_delay_ms, [0.5, 0.95], 8192) AS retry
    FROM flows
    WHERE chain = $3 AND start_unix_nano >= $1 AND start_unix_nano < $2
);
