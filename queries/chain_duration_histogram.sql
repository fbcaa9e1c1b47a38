-- One chain's flows per power-of-two duration bucket: bucket b holds durations in
-- (2^(b-1), 2^b] ms, bucket 0 everything up to 1 ms.
SELECT CASE WHEN duration_ms <= 1 THEN 0 ELSE ceil(log2(duration_ms))::INTEGER END AS bucket, count(*)
FROM flows
WHERE chain = $3 AND start_unix_nano >= $1 AND start_unix_nano < $2
GROUP BY bucket
ORDER BY bucket;
