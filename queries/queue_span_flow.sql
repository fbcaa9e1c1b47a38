-- Messages sent and consumed per destination and time bucket, from spans. Bucket -1
-- holds everything before the range (the starting backlog).
SELECT coalesce(messaging_system, '') AS system, destination,
       CASE WHEN start_unix_nano < $1 THEN -1 ELSE (start_unix_nano - $1) // $3 END AS bucket,
       count(*) FILTER (WHERE messaging_operation IN ('send', 'create') OR (messaging_operation IS NULL AND kind = 'PRODUCER')) AS sent,
       count(*) FILTER (WHERE messaging_operation = 'process' OR (messaging_operation IS NULL AND kind = 'CONSUMER')
                        OR (messaging_operation = 'receive' AND kind = 'CONSUMER')) AS consumed
FROM spans
WHERE destination IS NOT NULL AND start_unix_nano < $2
GROUP BY ALL
ORDER BY bucket;
