SELECT 'service:' || service AS row, (time_unix_nano - $1) // $3 AS bucket, count(*) AS retries
FROM flow_retries WHERE time_unix_nano >= $1 AND time_unix_nano < $2
GROUP BY ALL
UNION ALL
SELECT 'destination:' || destination, (time_unix_nano - $1) // $3, count(*)
FROM flow_retries WHERE time_unix_nano >= $1 AND time_unix_nano < $2 AND destination IS NOT NULL
GROUP BY ALL
ORDER BY 1, 2;
