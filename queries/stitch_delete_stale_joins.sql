-- $1: the earliest write among the stale flows, so zone maps skip older rows.
DELETE FROM flow_traces WHERE updated_unix_nano >= $1 AND flow_id IN (SELECT flow_id FROM stale_flows);
DELETE FROM flow_join_keys WHERE updated_unix_nano >= $1 AND flow_id IN (SELECT flow_id FROM stale_flows);
