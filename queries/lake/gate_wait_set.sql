-- How long this connection waits for a lock before giving up, in milliseconds.
SELECT set_config('lock_timeout', $1, false)
