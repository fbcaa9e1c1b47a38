-- Dead letters per dead-letter destination in [$1, $2): how many, and the latest one's
-- flow and error (what an alert on that destination links to and quotes).
SELECT destination, count(*) AS dead_letters,
       arg_max(hex_id(flow_id), time_unix_nano) AS latest_flow_id,
       arg_max(error, time_unix_nano) AS latest_error
FROM flow_dead_letters
WHERE time_unix_nano >= $1 AND time_unix_nano < $2
GROUP BY destination
ORDER BY destination;
