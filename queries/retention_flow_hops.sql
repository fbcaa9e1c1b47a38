DELETE FROM flow_hops WHERE flow_id IN (SELECT flow_id FROM flows WHERE end_unix_nano < ?);
