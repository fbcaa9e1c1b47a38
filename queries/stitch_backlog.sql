-- Rows the stitcher has still to read: those of the commits after $1 up to $2 (commits
-- made before their rows were counted count 0).
SELECT coalesce(sum(stitch_rows), 0) FROM commits WHERE commit_seq > $1 AND commit_seq <= $2;
