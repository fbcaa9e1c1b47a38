SELECT time_unix_nano, receiver, fingerprint, status, attempts, outcome, error
FROM alert_deliveries ORDER BY time_unix_nano DESC LIMIT ?;
