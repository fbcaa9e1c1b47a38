-- The spans of commits ($1, $2], with the columns the stitcher reads.
SELECT * FROM span_facts
WHERE commit_seq > $1 AND commit_seq <= $2;
