-- Retries of flows that settled in commits ($1, $2].
SELECT coalesce(destination, '') FROM flow_retries
WHERE flow_id IN (SELECT flow_id FROM flows WHERE last_commit_seq > $1 AND last_commit_seq <= $2);
