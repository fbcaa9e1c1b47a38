-- Flows whose last span was received up to commit $1 (their rows in flow_* go first).
DELETE FROM flows WHERE coalesce(last_commit_seq, 0) <= $1;
