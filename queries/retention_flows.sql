DELETE FROM flows WHERE end_unix_nano < ?;
