DELETE FROM flow_dead_letters WHERE flow_id IN (SELECT flow_id FROM flows WHERE end_unix_nano < ?);
