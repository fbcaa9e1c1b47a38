-- Messages counted per destination in stitcher rounds ($1, $2]: sent, and consumed (by
-- process spans where there are any, else by receives).
SELECT system, destination, sum(sent)::BIGINT,
       sum(CASE WHEN processed > 0 THEN processed ELSE received END)::BIGINT
FROM queue_counts
WHERE commit_seq > $1 AND commit_seq <= $2
GROUP BY ALL;
