-- Takes the append gate shared: receivers' commits proceed side by side (PostgreSQL).
SELECT pg_advisory_lock_shared($1)
