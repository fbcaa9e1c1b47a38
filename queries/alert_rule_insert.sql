INSERT INTO alert_rules (id, rule, created_unix_nano, updated_unix_nano) VALUES (?, ?, ?, ?);
