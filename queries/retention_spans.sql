DELETE FROM spans WHERE start_unix_nano < ?;
