INSERT INTO ignored_join_keys (kind, value, traces, detected_unix_nano) VALUES (?, ?, ?, ?);
