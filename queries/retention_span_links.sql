DELETE FROM span_links WHERE span_start_unix_nano < ?;
