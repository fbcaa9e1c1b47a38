-- A flow by its id, or by any trace id it contains (flow ids change when flows merge).
SELECT flow_id, chain, start_unix_nano, duration_ms, services, error, retries, dead_letters,
       queue_wait_ms, service_ms, retry_delay_ms, path, updated_unix_nano
FROM flows
WHERE flow_id = (SELECT flow_id FROM flow_traces WHERE trace_id = $1 LIMIT 1)
LIMIT 1;
