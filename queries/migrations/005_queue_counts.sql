-- Messages sent and consumed per destination and 5-second slot, counted from spans by the
-- stitcher as they are committed (queries/queue_counts_add.sql). The queue pages read
-- these instead of scanning every messaging span since the beginning of retention.
-- `commit_seq` is the last commit a row counts, so a restarted stitcher, which replays
-- the stored spans, does not count them twice.
CREATE TABLE queue_counts (
    system         VARCHAR NOT NULL,
    destination    VARCHAR NOT NULL,
    slot_unix_nano BIGINT  NOT NULL,
    sent           BIGINT  NOT NULL,
    processed      BIGINT  NOT NULL,  -- `process` spans, one per message
    received       BIGINT  NOT NULL,  -- messages `receive` spans took (a batch counts its size)
    commit_seq     BIGINT  NOT NULL
);

INSERT INTO queue_counts
SELECT coalesce(messaging_system, ''), destination, start_unix_nano // 5000000000 * 5000000000,
       count(*) FILTER (WHERE messaging_operation IN ('send', 'create') OR (messaging_operation IS NULL AND kind = 'PRODUCER')),
       count(*) FILTER (WHERE messaging_operation = 'process' OR (messaging_operation IS NULL AND kind = 'CONSUMER')),
       coalesce(sum(coalesce(batch_message_count, 1)) FILTER (WHERE messaging_operation = 'receive'), 0),
       coalesce((SELECT max(commit_seq) FROM spans), 0)
FROM spans
WHERE destination IS NOT NULL
GROUP BY ALL;
