-- The last commit of the next stitching round: of the commits after $1 up to $2, the
-- longest run whose rows add up to at most $3 (commits of unknown size count 0; the
-- caller takes at least one commit). Commits are appended in order, so zone maps on
-- commit_seq confine this to the commits not yet stitched.
SELECT max(commit_seq)
FROM (
    SELECT commit_seq, sum(coalesce(stitch_rows, 0)) OVER (ORDER BY commit_seq) AS rows_through
    FROM commits
    WHERE commit_seq > $1 AND commit_seq <= $2
)
WHERE rows_through <= $3;
