-- Takes the append gate exclusively: no receiver commits until this connection lets go.
SELECT pg_advisory_lock($1)
