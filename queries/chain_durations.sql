SELECT duration_ms, queue_wait_ms, service_ms, retry_delay_ms
FROM flows
WHERE chain = $3 AND start_unix_nano >= $1 AND start_unix_nano < $2;
