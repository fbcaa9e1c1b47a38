-- Takes the active stitcher's advisory lock if no other session holds it (PostgreSQL).
SELECT pg_try_advisory_lock($1)
