DELETE FROM flow_traces WHERE updated_unix_nano >= $1 AND flow_id IN (SELECT flow_id FROM stale_flows);
DELETE FROM flow_join_keys WHERE updated_unix_nano >= $1 AND flow_id IN (SELECT flow_id FROM stale_flows);
DELETE FROM flow_hops WHERE updated_unix_nano >= $1 AND flow_id IN (SELECT flow_id FROM stale_flows);
DELETE FROM flow_retries WHERE updated_unix_nano >= $1 AND flow_id IN (SELECT flow_id FROM stale_flows);
DELETE FROM flow_dead_letters WHERE updated_unix_nano >= $1 AND flow_id IN (SELECT flow_id FROM stale_flows);
DELETE FROM stale_flows;
