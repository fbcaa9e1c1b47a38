-- Flows that settled with their last span in commits ($1, $2].
SELECT chain, duration_ms, error, dead_letters > 0, queue_wait_ms, retry_delay_ms
FROM flows
WHERE last_commit_seq > $1 AND last_commit_seq <= $2;
