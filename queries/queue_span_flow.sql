-- Messages sent and consumed per destination and time bucket ($3, a multiple of the
-- 5-second slots), from the counts the stitcher keeps. Bucket -1 holds everything before
-- the range (the starting backlog). Consumption is counted twice over: by `process` spans
-- (one per message) and by `receive` spans (a batch counts its messages); the caller uses
-- the process count where a destination has process spans, so a receive followed by its
-- process spans is not counted double.
SELECT system, destination,
       CASE WHEN slot_unix_nano < $1 THEN -1 ELSE (slot_unix_nano - $1) // $3 END AS bucket,
       sum(sent)::BIGINT, sum(processed)::BIGINT, sum(received)::BIGINT
FROM queue_counts
WHERE slot_unix_nano < $2
GROUP BY ALL
ORDER BY bucket;
