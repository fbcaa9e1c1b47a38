SELECT time_unix_nano, hex_id(flow_id), destination, source_destination, message_id, correlation_id, error
FROM flow_dead_letters
WHERE time_unix_nano >= $1 AND time_unix_nano < $2
ORDER BY time_unix_nano DESC
LIMIT 500;
