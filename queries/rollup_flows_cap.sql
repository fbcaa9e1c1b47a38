-- Where a roll-up of the flows settled in commits ($1, $2] stops so that it takes at most
-- about $3 flows: $2 when there are fewer, else the commit of the $3-th flow's last span
-- (that commit's other flows come along, so no flow is split from its commit).
SELECT CASE WHEN count(*) < $3 THEN $2 ELSE max(last_commit_seq) END
FROM (
    SELECT last_commit_seq FROM flows
    WHERE last_commit_seq > $1 AND last_commit_seq <= $2
    ORDER BY last_commit_seq
    LIMIT $3
);
