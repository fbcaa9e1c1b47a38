DELETE FROM queue_counts WHERE slot_unix_nano < ?;
