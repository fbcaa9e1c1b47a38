-- Dead letters of flows that settled in commits ($1, $2].
SELECT destination FROM flow_dead_letters
WHERE flow_id IN (SELECT flow_id FROM flows WHERE last_commit_seq > $1 AND last_commit_seq <= $2);
