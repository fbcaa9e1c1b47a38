SELECT DISTINCT trace_id, correlation_id
FROM logs
WHERE commit_seq > ? AND commit_seq <= ? AND trace_id IS NOT NULL AND correlation_id IS NOT NULL;
