SELECT time_unix_nano, rule_id, rule_name, fingerprint, transition, value, labels
FROM alert_history ORDER BY time_unix_nano DESC LIMIT ?;
