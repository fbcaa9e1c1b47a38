SELECT attempt, count(*) AS retries
FROM flow_retries WHERE time_unix_nano >= $1 AND time_unix_nano < $2
GROUP BY attempt ORDER BY attempt;
