SELECT fingerprint, rule_id, labels, annotations, state, value, active_since_unix_nano, firing_since_unix_nano, page
FROM alert_instances;
