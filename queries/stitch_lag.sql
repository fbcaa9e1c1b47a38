-- Of the commits not yet stitched (above $1, up to $2): when the oldest was received, and
-- how many rows the stitcher has still to read (commits made before their rows were
-- counted count 0).
SELECT min(committed_unix_nano), coalesce(sum(stitch_rows), 0)
FROM commits WHERE commit_seq > $1 AND commit_seq <= $2;
