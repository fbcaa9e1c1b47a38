INSERT INTO alert_history (time_unix_nano, rule_id, rule_name, fingerprint, transition, value, labels) VALUES (?, ?, ?, ?, ?, ?, ?);
