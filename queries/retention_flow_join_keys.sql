-- The rows of flows whose last span was received up to commit $1.
DELETE FROM flow_join_keys WHERE flow_id IN (SELECT flow_id FROM flows WHERE coalesce(last_commit_seq, 0) <= $1);
