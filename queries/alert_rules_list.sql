SELECT id, rule FROM alert_rules ORDER BY created_unix_nano, id;
