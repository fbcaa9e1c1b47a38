DELETE FROM metric_points WHERE time_unix_nano < ?;
