-- Takes the append gate exclusively: no receiver commits until this session lets go.
SELECT pg_advisory_lock($1)
