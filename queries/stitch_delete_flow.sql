DELETE FROM flow_traces WHERE updated_unix_nano = $2 AND flow_id = $1::UUID;
DELETE FROM flow_join_keys WHERE updated_unix_nano = $2 AND flow_id = $1::UUID;
DELETE FROM flow_hops WHERE updated_unix_nano = $2 AND flow_id = $1::UUID;
DELETE FROM flow_retries WHERE updated_unix_nano = $2 AND flow_id = $1::UUID;
DELETE FROM flow_dead_letters WHERE updated_unix_nano = $2 AND flow_id = $1::UUID;
