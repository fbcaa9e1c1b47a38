DELETE FROM flow_hops WHERE flow_id IN (SELECT flow_id FROM stale_flows);
DELETE FROM flow_retries WHERE flow_id IN (SELECT flow_id FROM stale_flows);
DELETE FROM flow_dead_letters WHERE flow_id IN (SELECT flow_id FROM stale_flows);
DELETE FROM stale_flows;
