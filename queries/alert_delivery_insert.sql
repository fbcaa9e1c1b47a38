INSERT INTO alert_deliveries (time_unix_nano, receiver, fingerprint, status, attempts, outcome, error) VALUES (?, ?, ?, ?, ?, ?, ?);
