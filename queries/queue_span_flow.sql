-- Messages sent and consumed per destination and time bucket, from spans. Bucket -1
-- holds everything before the range (the starting backlog). Consumption is counted twice
-- over: by `process` spans (one per message) and by `receive` spans (a batch counts its
-- messages); the caller uses the process count where a destination has process spans, so
-- a receive followed by its process spans is not counted double.
SELECT coalesce(messaging_system, '') AS system, destination,
       CASE WHEN start_unix_nano < $1 THEN -1 ELSE (start_unix_nano - $1) // $3 END AS bucket,
       count(*) FILTER (WHERE messaging_operation IN ('send', 'create') OR (messaging_operation IS NULL AND kind = 'PRODUCER')) AS sent,
       count(*) FILTER (WHERE messaging_operation = 'process' OR (messaging_operation IS NULL AND kind = 'CONSUMER')) AS processed,
       coalesce(sum(coalesce(batch_message_count, 1)) FILTER (WHERE messaging_operation = 'receive'), 0)::BIGINT AS received
FROM spans
WHERE destination IS NOT NULL AND start_unix_nano < $2
GROUP BY ALL
ORDER BY bucket;
