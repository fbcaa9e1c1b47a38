DELETE FROM logs WHERE time_unix_nano < ?;
