DELETE FROM flow_hops WHERE flow_id = $1;
DELETE FROM flow_retries WHERE flow_id = $1;
DELETE FROM flow_dead_letters WHERE flow_id = $1;
