SELECT kind, value, traces, detected_unix_nano FROM ignored_join_keys ORDER BY detected_unix_nano DESC LIMIT 200;
