-- Counts the messaging spans of commits ($1, $2] into queue_counts (see migration 005).
-- A send recorded twice (an SQS instrumentation's PRODUCER span around the AWS SDK's
-- SendMessage CLIENT span, both with the message id) counts once.
INSERT INTO queue_counts
SELECT coalesce(messaging_system, ''), destination, start_unix_nano // 5000000000 * 5000000000,
       count(DISTINCT coalesce(message_id, span_id))
           FILTER (WHERE messaging_operation IN ('send', 'create') OR (messaging_operation IS NULL AND kind = 'PRODUCER')),
       count(*) FILTER (WHERE messaging_operation = 'process' OR (messaging_operation IS NULL AND kind = 'CONSUMER')),
       coalesce(sum(coalesce(batch_message_count, 1)) FILTER (WHERE messaging_operation = 'receive'), 0),
       $2
FROM spans
WHERE destination IS NOT NULL AND commit_seq > $1 AND commit_seq <= $2
GROUP BY ALL;
